"""Stored files are fsync'ed (file, then its folder) before acknowledgement; PNG structure check."""

import io
import os
import zlib
from datetime import datetime
from pathlib import Path

import pytest
from helpers import upload
from PIL import Image as PilImage
from sqlalchemy import event

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
