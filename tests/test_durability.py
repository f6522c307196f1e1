"""Stored files are fsync'ed (file, then its folder) before acknowledgement; PNG structure check."""

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path

import pytest
from conftest import MODEL_URL
from helpers import upload
from PIL import Image as PilImage
from sqlalchemy import event, func, select

from aoi_flask.extensions import db
from aoi_flask.models import Image
from aoi_flask.services import storage as storage_module
from aoi_flask.services.imaging import png_data_size, png_size
from aoi_flask.services.results import image_paths
from aoi_flask.services.storage import Storage


def png_bytes(width=40, height=30, **save):
    buffer = io.BytesIO()
    PilImage.new("RGB", (width, height), (10, 200, 30)).save(buffer, "PNG", **save)
    return buffer.getvalue()


def fd_path(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


def record_syncs(monkeypatch, events):
    """Log every fsync (with the path it syncs) and rename of the storage module."""
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", fd_path(fd)))
        real_fsync(fd)

    def replace(source, target):
        events.append(("rename", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(storage_module.os, "fsync", fsync)
    monkeypatch.setattr(storage_module.os, "replace", replace)


def test_write_syncs_the_file_before_the_rename_and_the_folders_after(tmp_path, monkeypatch):
    events = []
    record_syncs(monkeypatch, events)
    Storage(tmp_path).write_atomic("results/x/a.png", b"data")
    (kind, synced), rename, *folders = events
    assert kind == "fsync" and Path(synced).name.startswith(".tmp-")
    assert rename == ("rename", str(tmp_path / "results/x/a.png"))
    # The file's folder, and the parents of the two folders it had to create.
    assert sorted(folders) == [("fsync", str(tmp_path / p)) for p in ("", "results", "results/x")]
    assert (tmp_path / "results/x/a.png").read_bytes() == b"data"


def test_several_files_share_one_folder_sync(tmp_path, monkeypatch):
    storage = Storage(tmp_path)
    storage.write_atomic("results/x/first.png", b"1")
    events = []
    record_syncs(monkeypatch, events)
    storage.write_files({"results/x/a.png": b"a", "results/x/b.json": b"b"})
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "fsync", "rename", "rename", "fsync"]
    assert events[-1] == ("fsync", str(tmp_path / "results/x"))


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    storage = Storage(tmp_path)
    real_temp = storage.write_temp

    def fail_second(target, data):
        if target.name == "b.png":
            raise OSError(28, "No space left on device")
        return real_temp(target, data)

    monkeypatch.setattr(storage, "write_temp", fail_second)
    with pytest.raises(OSError):
        storage.write_files({"results/x/a.png": b"a", "results/x/b.png": b"b"})
    assert [p.name for p in (tmp_path / "results/x").iterdir()] == []


def test_reserving_a_result_folder_syncs_its_entry(tmp_path, monkeypatch):
    events = []
    record_syncs(monkeypatch, events)
    img_id, relpath = Storage(tmp_path).reserve_result_dir(datetime(2026, 2, 24, 17, 38))
    assert relpath == f"results/20260224/{img_id}"
    synced = {path for _, path in events}
    assert synced == {str(tmp_path), str(tmp_path / "results"), str(tmp_path / "results/20260224")}


def test_an_upload_is_synced_before_its_commit(
    app, client, model_service, sample_input, monkeypatch
):
    """Every file of the image and every folder entry it added reach the disk before
    the transaction that acknowledges it commits."""
    events = []
    record_syncs(monkeypatch, events)

    def on_commit(conn):
        events.append(("commit", ""))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "commit", on_commit)
    try:
        response = upload(client, sample_input)
    finally:
        event.remove(engine, "commit", on_commit)
    assert response.status_code == 201, response.get_json()
    commits = [i for i, (kind, _) in enumerate(events) if kind == "commit"]
    assert len(commits) == 1, events
    before, after = events[: commits[0]], events[commits[0] + 1 :]
    assert after == []
    root = Path(app.config["STORAGE_ROOT"]).resolve()
    with app.app_context():
        image = db.session.get(Image, response.get_json()["img_unique_id"])
        stored = [root / path for path in image_paths(image)]
    result_dir = stored[1].parent
    synced = [Path(path) for kind, path in before if kind == "fsync"]
    renamed = [Path(path) for kind, path in before if kind == "rename"]
    assert sorted(renamed) == sorted(stored)
    # One temporary file synced per stored file, in the stored file's folder ...
    temps = [path for path in synced if path.name.startswith(".tmp-")]
    assert sorted((p.parent, p.suffix) for p in temps) == sorted(
        (p.parent, p.suffix) for p in stored
    )
    # ... and every folder whose entries changed: the input's, the result folder, its day.
    assert {stored[0].parent, result_dir, result_dir.parent} <= set(synced)
    for path in stored:  # each folder is synced after its file was renamed into it
        last_rename = max(i for i, (kind, p) in enumerate(before) if p == str(path))
        assert ("fsync", str(path.parent)) in before[last_rename:]


def test_files_are_staged_while_the_png_checks_run_and_dropped_if_one_fails(
    app, client, model_service, sample_input, storage_root, monkeypatch
):
    """The result files are written (temporary names) while the PNG checks run; a
    check that then fails leaves nothing behind, temporary files included."""
    from aoi_flask.services import segformer

    staging = threading.Event()
    real_write_temp = Storage.write_temp

    def write_temp(self, target, data):
        if "/results/" in str(target):
            staging.set()
        return real_write_temp(self, target, data)

    def png_check(data):
        assert staging.wait(10), "the result files were not written while the checks ran"
        raise ValueError("broken")

    monkeypatch.setattr(Storage, "write_temp", write_temp)
    monkeypatch.setattr(segformer, "png_size", png_check)
    response = upload(client, sample_input)
    assert response.status_code == 502, response.get_json()
    assert response.get_json()["code"] == "MODEL_BAD_RESPONSE"
    assert staging.is_set()
    assert [p for p in (storage_root / "results").rglob("*") if p.is_file()] == []
    assert [p for p in (storage_root / "uploads").rglob("*") if p.is_file()] == []


def test_fsync_off_skips_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(storage_module.os, "fsync", calls.append)
    Storage(tmp_path, fsync=False).write_atomic("results/x/a.png", b"data")
    assert calls == []


def test_png_size_reads_a_complete_png():
    assert png_size(png_bytes()) == (40, 30)
    assert png_size(png_bytes(17, 9, optimize=True)) == (17, 9)


def test_interlaced_size_counts_each_adam7_pass():
    # 1x1: only pass 1 has a pixel; 8x8 grey: 1,1,2,4,8,16,32 pixels in 1,1,1,2,2,4,4 rows.
    assert png_data_size(1, 1, 8, 0, 1) == 2
    assert png_data_size(8, 8, 8, 0, 1) == 2 + 2 + 3 + 2 * 3 + 2 * 5 + 4 * 5 + 4 * 9
    assert png_data_size(8, 8, 8, 0, 0) == 8 * 9


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:-12],  # no IEND
        lambda d: d[: len(d) // 2],  # truncated in IDAT
        lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:],  # CRC mismatch
        lambda d: b"GIF89a" + d[6:],
    ],
)
def test_png_size_refuses_damaged(damage):
    with pytest.raises(ValueError):
        png_size(damage(png_bytes()))


def test_png_size_refuses_data_shorter_than_ihdr_says():
    data = png_bytes(40, 30)
    # Same chunks, but IHDR claims one more row than the pixel data holds.
    ihdr = bytearray(data[8:33])
    ihdr[11] = 31
    ihdr[21:25] = zlib.crc32(bytes(ihdr[4:21])).to_bytes(4, "big")
    with pytest.raises(ValueError, match="inflates"):
        png_size(data[:8] + bytes(ihdr) + data[33:])


# ---- the process killed (SIGKILL) at each step of an upload ----------------------------------

# Runs uploads in a child process that kills itself with SIGKILL at one step (the
# same as being killed there). Each 201 is printed as it is acknowledged.
CHILD = r"""
import itertools, json, os, signal, sys
settings = json.loads(sys.argv[1])
sys.path.insert(0, settings["tests"])
import requests_mock
from flask import Flask
from helpers import echo, upload
from aoi_flask import create_app
from aoi_flask.config import TestingConfig
from aoi_flask.services import results, storage

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

class HalfWriter:
    # A file handle that dies after writing half of what it is given.
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)
    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        die()
    def __getattr__(self, name):
        return getattr(self.handle, name)

step = settings["step"]
if step == "input_saved":
    results.ResultsService.process = die
elif step == "mid_write":
    real_fdopen, opened = os.fdopen, itertools.count(1)
    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        # Result files open in writer threads: next() is atomic, so exactly one gets
        # number 4 (input, combined, mask, overlay); len() of a list could skip it.
        return HalfWriter(handle) if next(opened) == 4 else handle
    storage.os.fdopen = fdopen
elif step == "before_rename":
    storage.os.replace = lambda *a: die() if "/results/" in str(a[1]) else os.rename(*a)
elif step == "files_synced":
    results.insert_image = die
elif step == "rows_inserted":
    results.commit_or_raise = die
elif step == "committed":
    real_commit = results.commit_or_raise
    def commit_then_die():
        real_commit()
        die()
    results.commit_or_raise = commit_then_die

app = create_app(TestingConfig, **settings["config"])
client = app.test_client()
answer = json.loads(open(settings["answer"]).read())
data = open(settings["input"], "rb").read()
with requests_mock.Mocker() as mock:
    mock.post(settings["model"] + "/upload", json=echo(answer))
    mock.get(settings["model"] + "/api/model/current", json={"model_name": "m"})
    for _ in range(settings["uploads"]):
        response = upload(client, data)
        body = response.get_json()
        print(json.dumps([response.status_code, body.get("img_unique_id")]), flush=True)
"""
TESTS = Path(__file__).parent
DATA = TESTS / "data"


def start_child(app, sample_answer, tmp_path, step, uploads=1):
    answer = tmp_path / "answer.json"
    if not answer.exists():
        answer.write_text(json.dumps(sample_answer))
    settings = {
        "tests": str(TESTS),
        "step": step,
        "uploads": uploads,
        "answer": str(answer),
        "input": str(DATA / "segformer_input.jpeg"),
        "model": MODEL_URL,
        "config": {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "STORAGE_ROOT": app.config["STORAGE_ROOT"],
            "MODEL_SERVICE_URL": MODEL_URL,
            "LOG_LEVEL": "WARNING",
        },
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(settings)],
        cwd=TESTS.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def image_count(app):
    with app.app_context():
        db.session.rollback()
        return db.session.scalar(select(func.count()).select_from(Image))


def assert_intact(app, img_ids, sample_images):
    """Each acknowledged image: its rows, and its files byte for byte."""
    root = Path(app.config["STORAGE_ROOT"])
    with app.app_context():
        for img_id in img_ids:
            image = db.session.get(Image, img_id)
            assert image is not None, f"acknowledged {img_id} is lost"
            assert len(image.classes) == 4
            assert sum(len(c.regions) for c in image.classes) == image.total_defects == 7
            for kind, path in (
                ("combined", image.result_image_1_path),
                ("mask", image.result_image_2_path),
                ("overlay", image.result_image_3_path),
            ):
                assert (root / path).read_bytes() == sample_images[kind]
            assert (root / image.input_image_path).read_bytes() == (
                DATA / "segformer_input.jpeg"
            ).read_bytes()


def leftovers(app):
    root = Path(app.config["STORAGE_ROOT"])
    return sorted(
        p.relative_to(root).as_posix()
        for top in ("uploads", "results")
        for p in (root / top).rglob("*")
        if p.name != ".gitkeep" and (p.is_file() or p.parent.parent.name == "results")
    )


def fsck(app, *args):
    result = app.test_cli_runner().invoke(args=["aoi", "fsck", "--json", *args])
    return result.exit_code, json.loads(result.output)


RESULTS = ["analysis.json", "combined.png", "mask.png", "overlay.png", "thumbnail.jpg"]
ALL_TEMPS = sorted([".tmp.jpg", ".tmp.json"] + [".tmp.png"] * 3)


@pytest.mark.faults
@pytest.mark.parametrize(
    "step, expected",
    [
        ("input_saved", lambda names: names == []),  # before the model call: an empty folder
        # A result file half written (the files are written side by side): temporary only.
        ("mid_write", lambda names: names and set(names) <= set(ALL_TEMPS)),
        ("before_rename", lambda names: names == ALL_TEMPS),  # all synced, none renamed
        ("files_synced", lambda names: names == RESULTS),  # every file in place, no rows
        ("rows_inserted", lambda names: names == RESULTS),  # rows not committed
    ],
)
def test_killed_before_the_commit_leaves_nothing_fsck_cannot_remove(
    make_app, sample_answer, tmp_path, step, expected
):
    app = make_app()
    child = start_child(app, sample_answer, tmp_path, step)
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err[-3000:]
    assert out == ""  # nothing was acknowledged
    assert image_count(app) == 0
    left = leftovers(app)
    (result_dir,) = [path for path in left if path.startswith("results/") and path.count("/") == 2]
    names = sorted(
        ".tmp" + Path(name).suffix if name.startswith(".tmp-") else name
        for name in os.listdir(Path(app.config["STORAGE_ROOT"]) / result_dir)
    )
    assert expected(names), names
    status, report = fsck(app)
    assert status == 1
    assert report["before"]["by_kind"] == {"orphan_file": 1, "orphan_dir": 1}  # input, folder
    status, report = fsck(app, "--repair")
    assert status == 0, report
    assert report["after"]["problem_count"] == 0
    assert leftovers(app) == []
    assert fsck(app)[0] == 0


@pytest.mark.faults
def test_killed_after_the_commit_the_image_is_complete(
    make_app, sample_answer, sample_images, tmp_path
):
    app = make_app()
    child = start_child(app, sample_answer, tmp_path, "committed")
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err[-3000:]
    with app.app_context():
        img_ids = db.session.scalars(select(Image.img_unique_id)).all()
    assert len(img_ids) == 1
    assert_intact(app, img_ids, sample_images)
    status, report = fsck(app)
    assert (status, report["before"]["problem_count"]) == (0, 0), report


@pytest.mark.faults
def test_killed_at_random_moments_nothing_acknowledged_is_lost(
    make_app, sample_answer, sample_images, tmp_path, capsys
):
    """Uploads run back to back; the process is killed at a random moment after a few
    201s, three times. Every acknowledged image survives complete, and fsck --repair
    removes only what the kill cut off."""
    app = make_app()
    rng = random.Random(13)
    acknowledged, repaired = [], []
    for _ in range(3):
        child = start_child(app, sample_answer, tmp_path, "none", uploads=100)
        for _ in range(rng.randint(1, 3)):
            status, img_id = json.loads(child.stdout.readline())
            assert status == 201
            acknowledged.append(img_id)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the next upload
        child.kill()
        out, _ = child.communicate(timeout=60)
        acknowledged += [json.loads(line)[1] for line in out.splitlines()]
        assert child.returncode == -signal.SIGKILL
        status, report = fsck(app, "--repair")
        assert status == 0, report
        repaired.append(report["before"]["by_kind"])
        assert_intact(app, acknowledged, sample_images)
    assert image_count(app) >= len(acknowledged)
    with capsys.disabled():
        print(
            f"\n[faults] killed 3 times: {len(acknowledged)} acknowledged, all intact; "
            f"fsck --repair found {repaired}"
        )
