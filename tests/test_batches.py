"""POST /upload/batch, GET /batches…, retry and recovery after a restart."""

import io
import json
import threading
import zipfile

import pytest
import requests
from conftest import MODEL_URL
from helpers import echo, image_bytes, padded_png, stored_files, upload_batch

from aoi_flask.extensions import db
from aoi_flask.models import BatchItem, Image
from aoi_flask.services import batches as batch_service
from aoi_flask.services.storage import MB

CORRUPT = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def mixed_files(sample_input):
    return [
        (sample_input, "good-1.jpeg"),
        (CORRUPT, "corrupt.png"),
        (b"%PDF-1.7 not an image", "report.pdf"),
        (image_bytes("PNG"), "good-2.png"),
    ]


def test_sync_batch_mixes_good_corrupt_and_wrong_type(client, model_service, sample_input):
    response = upload_batch(client, mixed_files(sample_input))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["total_images"], body["processed"], body["failed"]) == (4, 2, 2)
    assert body["status"] == "partial"
    assert body["download_url"].endswith(f"/download/batch/{body['batch_id']}")
    results = body["results"]
    assert [r["file_index"] for r in results] == [0, 1, 2, 3]
    assert [r["success"] for r in results] == [True, False, False, True]
    assert results[1]["code"] == "UNDECODABLE_IMAGE"
    assert results[2]["code"] == "UNSUPPORTED_FORMAT"
    assert results[2]["filename"] == "report.pdf"
    good = results[0]
    assert good["total_defects"] == 7 and good["batch_id"] == body["batch_id"]
    assert good["analysis_results"]["classes"]["4_Env_Particle"]["total_regions"] == 0
    assert "overlay_image" not in good
    assert body["total_processing_time"] == pytest.approx(2 * 0.6743)
    assert model_service.call_count >= 2


def test_batch_images_are_stored_with_their_batch_id(client, model_service, sample_input):
    body = upload_batch(client, [(sample_input, "a.jpg"), (sample_input, "b.jpg")]).get_json()
    ids = [r["img_unique_id"] for r in body["results"]]
    listed = client.get(f"/images?batch_id={body['batch_id']}").get_json()
    assert sorted(i["img_unique_id"] for i in listed["images"]) == sorted(ids)


def test_async_batch_answers_202_and_progress_is_observable(
    app, client, requests_mock, sample_answer, sample_input
):
    gate = threading.Event()

    def slow_answer(request, context):
        gate.wait(10)
        return echo(sample_answer)(request, context)

    requests_mock.post(f"{MODEL_URL}/upload", json=slow_answer)
    requests_mock.get(f"{MODEL_URL}/api/model/current", json={"model_name": "m"})
    response = upload_batch(
        client, [(sample_input, f"{i}.jpg") for i in range(3)], **{"async": "true"}
    )
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == body["status_url"]
    assert body["accepted"] == 3 and body["rejected"] == 0
    midway = client.get(f"/batches/{body['batch_id']}").get_json()
    assert midway["status"] in ("queued", "running")
    assert midway["processed"] == 0 and midway["percent_done"] == 0.0
    assert {f["state"] for f in midway["files"]} <= {"queued", "processing"}
    gate.set()
    app.extensions["aoi"].batches.wait_idle(30)
    done = client.get(f"/batches/{body['batch_id']}").get_json()
    assert done["status"] == "done"
    assert (done["processed"], done["failed"], done["percent_done"]) == (3, 0, 100.0)
    assert all(f["img_unique_id"] and f["total_defects"] == 7 for f in done["files"])
    assert done["finished_at"].endswith("Z")


def test_each_batch_input_is_decoded_once(client, model_service, sample_input, monkeypatch):
    """Checked when the batch is uploaded; that check (size, thumbnail) is reused when
    the file's turn comes, not redone (a second JPEG decode per image)."""
    from aoi_flask.services import results as results_module

    checked = []
    real_check = results_module.check_image
    monkeypatch.setattr(
        results_module,
        "check_image",
        lambda data, **kw: checked.append(1) or real_check(data, **kw),
    )
    body = upload_batch(client, [(sample_input, "a.jpg"), (image_bytes("PNG"), "b.png")]).get_json()
    assert body["processed"] == 2
    assert len(checked) == 2
    ids = [r["img_unique_id"] for r in body["results"]]
    thumbnails = [client.get(f"/download/image/{img_id}/thumbnail") for img_id in ids]
    assert all(t.status_code == 200 and t.data.startswith(b"\xff\xd8") for t in thumbnails)


def test_a_retried_file_is_checked_again(app, sample_input):
    """The kept check is taken once: a retry (or another process) checks the input anew."""
    from aoi_flask.services.results import Accepted, CheckedInputs

    kept = CheckedInputs(limit=2)
    accepted = [Accepted(f"id{i}", "d", "p", "n", checked=f"check{i}") for i in range(3)]
    for item in accepted:
        kept.keep(item, 10)
    assert kept.take("id0", 10) is None  # the oldest was dropped (limit 2)
    assert kept.take("id1", 11) is None  # other bytes than were checked
    assert kept.take("id2", 10) == "check2"
    assert kept.take("id2", 10) is None


def test_failed_files_are_retried_after_the_model_recovers(
    app, client, requests_mock, sample_answer, sample_input, storage_root
):
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ConnectionError)
    requests_mock.get(f"{MODEL_URL}/api/model/current", json={"model_name": "m"})
    body = upload_batch(client, [(sample_input, "a.jpg"), (sample_input, "b.jpg")]).get_json()
    assert body["failed"] == 2 and body["status"] == "failed"
    assert {r["code"] for r in body["results"]} == {"MODEL_UNAVAILABLE"}
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert all(f["retryable"] for f in status["files"])
    # Inputs are kept for the retry; no result files exist yet.
    assert len([p for p in stored_files(storage_root) if p.startswith("uploads/")]) == 2
    assert not [p for p in stored_files(storage_root) if p.startswith("results/")]

    requests_mock.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    retry = client.post(f"/batches/{body['batch_id']}/retry")
    assert retry.status_code == 202
    assert retry.get_json()["retried"] == 2
    app.extensions["aoi"].batches.wait_idle(30)
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert status["status"] == "done" and status["processed"] == 2
    assert [f["attempts"] for f in status["files"]] == [2, 2]
    again = client.post(f"/batches/{body['batch_id']}/retry")
    assert again.status_code == 200 and again.get_json()["retried"] == 0


def test_invalid_files_are_not_retryable(client, model_service, sample_input):
    body = upload_batch(client, mixed_files(sample_input)).get_json()
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert [f["retryable"] for f in status["files"]] == [False, False, False, False]


def test_batch_list_is_paginated_newest_first(client, model_service):
    ids = [
        upload_batch(client, [(image_bytes(), "x.png")]).get_json()["batch_id"] for _ in range(3)
    ]
    first = client.get("/batches?limit=2").get_json()
    assert (first["total"], first["pages"], len(first["batches"])) == (3, 2, 2)
    second = client.get("/batches?limit=2&page=2").get_json()
    listed = [b["batch_id"] for b in first["batches"] + second["batches"]]
    assert sorted(listed) == sorted(ids)
    assert first["batches"][0]["processed"] == 1


def test_batch_bad_input(make_app, client):
    no_files = client.post("/upload/batch", data={}, content_type="multipart/form-data")
    assert no_files.status_code == 400 and no_files.get_json()["code"] == "NO_FILES"
    small = make_app(MAX_BATCH_FILES=2).test_client()
    response = upload_batch(small, [(image_bytes(), f"{i}.png") for i in range(3)])
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "TOO_MANY_FILES" and "at most 2" in body["error"]
    bad = upload_batch(client, [(image_bytes(), "x.png")], **{"async": "maybe"})
    assert bad.status_code == 400 and "async" in bad.get_json()["error"]
    assert client.get("/batches/nope").status_code == 404
    assert client.post("/batches/nope/retry").status_code == 404
    assert client.get("/batches?page=0").status_code == 400


def test_too_many_files_are_refused_before_anything_is_stored(make_app, storage_root):
    app = make_app(MAX_BATCH_FILES=1)
    upload_batch(app.test_client(), [(image_bytes(), "a.png"), (image_bytes(), "b.png")])
    assert stored_files(storage_root) == []


def test_oversize_and_nameless_files_fail_alone(make_app, model_service):
    app = make_app(MAX_UPLOAD_MB=1)
    big = image_bytes("BMP", size=(1024, 1100), mode="RGB")
    body = upload_batch(
        app.test_client(), [(big, "big.bmp"), (image_bytes(), ""), (image_bytes(), "ok.png")]
    ).get_json()
    codes = [r.get("code") for r in body["results"]]
    assert codes == ["FILE_TOO_LARGE", "EMPTY_FILENAME", None]


def test_unfinished_items_are_resumed_after_a_restart(app, client, model_service, sample_input):
    body = upload_batch(client, [(sample_input, "a.jpg")]).get_json()
    with app.app_context():
        item = db.session.query(BatchItem).one()
        # Simulate a crash: one item stuck in processing, one queued that never ran.
        item.state = "processing"
        accepted = app.extensions["aoi"].results.accept(sample_input, "b.jpg")
        stuck = BatchItem(
            batch_id=item.batch_id,
            file_index=1,
            filename="b.jpg",
            state="processing",
            img_unique_id=accepted.img_id,
            input_path=accepted.input_path,
            result_dir=accepted.result_dir,
            queued_at=item.queued_at,
        )
        db.session.add(stuck)
        item.batch.total_files = 2
        db.session.commit()
        resumed = batch_service.recover_unfinished()
        assert resumed == [stuck.id]
        assert db.session.get(BatchItem, item.id).state == "done"  # its image row exists
    app.extensions["aoi"].batches.submit(resumed)
    app.extensions["aoi"].batches.wait_idle(30)
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert status["status"] == "done" and status["processed"] == 2
    with app.app_context():
        assert db.session.query(Image).count() == 2


def test_a_file_the_model_service_would_refuse_fails_alone(make_app, model_service, storage_root):
    app = make_app(MAX_UPLOAD_MB=1, MODEL_MAX_BODY_MB=1)
    files = [(padded_png(MB), "exactly-1MB.png"), (image_bytes(), "ok.png")]
    body = upload_batch(app.test_client(), files).get_json()
    refused, done = body["results"]
    assert (refused["success"], refused["code"]) == (False, "FILE_TOO_LARGE_FOR_MODEL")
    assert "exactly-1MB.png" in refused["error"]
    assert done["success"] is True and body["processed"] == 1
    sent = [r for r in model_service.request_history if r.path == "/upload"]
    assert len(sent) == 1
    inputs = [path for path in stored_files(storage_root) if path.startswith("uploads/")]
    assert len(inputs) == 1 and inputs[0].endswith("_ok.png")  # nothing kept of the refused


def test_percent_done_is_a_float_in_every_answer(client, model_service):
    body = upload_batch(client, [(image_bytes(), "a.png"), (CORRUPT, "b.png")]).get_json()
    batch_id = body["batch_id"]
    listed = client.get("/batches").get_json()["batches"][0]
    one = client.get(f"/batches/{batch_id}").get_json()
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/download/batch/{batch_id}").data))
    summary = json.loads(archive.read("batch_summary.json"))
    for answer in (listed, one, summary):
        assert answer["percent_done"] == 100.0 and isinstance(answer["percent_done"], float)
    raw = client.get(f"/batches/{batch_id}").get_data(as_text=True).replace(" ", "")
    assert '"percent_done":100.0' in raw
