"""Every failure of POST /upload: a clear JSON error, and nothing stored."""

import base64
import io
import json

import pytest
import requests
from conftest import MODEL_URL
from helpers import echo, image_bytes, padded_png, stored_files, upload

from aoi_flask.extensions import db
from aoi_flask.models import Image
from aoi_flask.services.storage import MB


def assert_nothing_stored(app, storage_root):
    with app.app_context():
        assert db.session.query(Image).count() == 0
    leftovers = [path for path in stored_files(storage_root) if not path.endswith(".gitkeep")]
    assert leftovers == []
    assert list((storage_root / "results").rglob("*_*")) == []


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == code
    assert len(body["error"]) > 20
    return body


# ---- bad input -------------------------------------------------------------------


def test_no_file_field(client, app, storage_root):
    response = client.post("/upload", data={"other": "x"}, content_type="multipart/form-data")
    body = assert_error(response, 400, "NO_FILE")
    assert "'image'" in body["error"]
    assert_nothing_stored(app, storage_root)


def test_not_multipart_at_all(client, app, storage_root):
    assert_error(client.post("/upload", json={"image": "x"}), 400, "NO_FILE")


def test_empty_file_name(client, app, storage_root):
    response = client.post(
        "/upload", data={"image": (io.BytesIO(b"abc"), "")}, content_type="multipart/form-data"
    )
    assert_error(response, 400, "EMPTY_FILENAME")


def test_zero_bytes(client, app, storage_root):
    assert_error(upload(client, b"", name="empty.png"), 400, "EMPTY_FILE")
    assert_nothing_stored(app, storage_root)


def test_type_is_checked_by_content_not_name(client, app, storage_root, model_service):
    body = assert_error(upload(client, b"GIF89a...", name="fake.jpg"), 400, "UNSUPPORTED_FORMAT")
    assert "JPEG, PNG, TIFF or BMP" in body["error"]
    html = b"<html><script>alert(1)</script></html>"
    assert_error(upload(client, html, name="page.png"), 400, "UNSUPPORTED_FORMAT")
    assert model_service.call_count == 0
    assert_nothing_stored(app, storage_root)


def test_truncated_image_is_refused(client, app, storage_root, sample_input, model_service):
    response = upload(client, sample_input[: len(sample_input) // 2])
    assert_error(response, 400, "UNDECODABLE_IMAGE")
    assert model_service.call_count == 0
    assert_nothing_stored(app, storage_root)


def test_decompression_bomb_is_refused(make_app, storage_root):
    app = make_app(MAX_IMAGE_PIXELS=1000)
    response = upload(app.test_client(), image_bytes("PNG", size=(100, 100)), name="bomb.png")
    body = assert_error(response, 400, "IMAGE_TOO_MANY_PIXELS")
    assert "100x100" in body["error"]


def test_file_over_the_limit_gets_413(make_app, storage_root):
    app = make_app(MAX_UPLOAD_MB=1)
    big = image_bytes("BMP", size=(1024, 1100), mode="RGB")  # ~3.4 MB
    body = assert_error(upload(app.test_client(), big, name="big.bmp"), 413, "PAYLOAD_TOO_LARGE")
    assert "1 MB" in body["error"]
    assert_nothing_stored(app, storage_root)


def test_unknown_route_and_wrong_method_are_json(client):
    body = assert_error(client.get("/nope"), 404, "NOT_FOUND")
    assert "/apidocs" in body["error"]
    response = client.get("/upload")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]


def test_unexpected_errors_are_json_500(app, client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["aoi"].results, "analyse_upload", explode)
    response = upload(client, image_bytes())
    body = assert_error(response, 500, "INTERNAL_ERROR")
    assert "boom" not in body["error"]


# ---- the model service failing -----------------------------------------------------


def test_model_unreachable_gives_503_with_retry_after(
    requests_mock, client, app, storage_root, sample_input
):
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ConnectionError)
    response = upload(client, sample_input)
    body = assert_error(response, 503, "MODEL_UNAVAILABLE")
    assert response.headers["Retry-After"] == "30"
    assert MODEL_URL in body["error"]
    assert_nothing_stored(app, storage_root)


def test_model_not_loaded_gives_503(requests_mock, client, app, storage_root, sample_input):
    requests_mock.post(
        f"{MODEL_URL}/upload",
        status_code=503,
        json={"success": False, "error": "模型尚未載入，請檢查系統狀態"},
    )
    response = upload(client, sample_input)
    body = assert_error(response, 503, "MODEL_NOT_LOADED")
    assert response.headers["Retry-After"]
    assert body["details"]["model_service_error"] == "模型尚未載入，請檢查系統狀態"
    assert_nothing_stored(app, storage_root)


def test_model_read_timeout_gives_504(requests_mock, client, app, storage_root, sample_input):
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ReadTimeout)
    assert_error(upload(client, sample_input), 504, "MODEL_TIMEOUT")
    assert_nothing_stored(app, storage_root)


def test_model_connect_timeout_counts_as_unreachable(requests_mock, client, sample_input):
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ConnectTimeout)
    assert_error(upload(client, sample_input), 503, "MODEL_UNAVAILABLE")


def test_model_500_gives_502(requests_mock, client, app, storage_root, sample_input):
    requests_mock.post(
        f"{MODEL_URL}/upload", status_code=500, json={"success": False, "error": "無法讀取圖片"}
    )
    body = assert_error(upload(client, sample_input), 502, "MODEL_ERROR")
    assert "無法讀取圖片" in body["error"]
    assert_nothing_stored(app, storage_root)


def corrupt(answer, change):
    broken = json.loads(json.dumps(answer))
    change(broken)
    return broken


def set_path(path, value):
    def change(answer):
        target = answer
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def damaged_png(key, damage):
    """The answer's PNG in `key`, still valid base64, its bytes damaged."""

    def change(answer):
        png = base64.b64decode(answer[key])
        answer[key] = base64.b64encode(damage(png)).decode()

    return change


def drop_class(answer):
    del answer["analysis_results"]["classes"]["1_PI_Particle"]["regions"][0]


BAD_ANSWERS = {
    "success false": set_path(["success"], False),
    "truncated base64": lambda a: a.update(overlay_image=a["overlay_image"][:1001]),
    "not base64": set_path(["mask_image"], "!!not base64!!"),
    "jpeg not png": set_path(["mask_image"], base64.b64encode(image_bytes("JPEG")).decode()),
    # Refused by the PNG check, which finishes after the files were staged (discarded).
    "png cut in half": damaged_png("combined_image", lambda png: png[: len(png) // 2]),
    "png bad crc": damaged_png("overlay_image", lambda png: png[:100] + b"\x00" + png[101:]),
    "png without iend": damaged_png("mask_image", lambda png: png[:-12]),
    "missing combined": lambda a: a.pop("combined_image"),
    "no analysis": lambda a: a.pop("analysis_results"),
    "no classes": set_path(["analysis_results", "classes"], {}),
    "bad class key": lambda a: a["analysis_results"]["classes"].update(PI={"class_id": 1}),
    "string float": set_path(
        ["analysis_results", "classes", "2_PR_Peeling", "regions", 0, "perimeter"], "157.9"
    ),
    "nan float": set_path(
        ["analysis_results", "classes", "2_PR_Peeling", "regions", 0, "circularity"],
        float("nan"),
    ),
    "float bbox": set_path(
        ["analysis_results", "classes", "3_Copper_Nodule", "regions", 0, "bounding_box", "x"],
        1.5,
    ),
    "regions miscounted": drop_class,
    "no image shape": set_path(["analysis_results", "image_shape"], None),
}


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_malformed_answers_give_502_and_store_nothing(
    requests_mock, client, app, storage_root, sample_input, sample_answer, kind
):
    requests_mock.post(f"{MODEL_URL}/upload", json=echo(corrupt(sample_answer, BAD_ANSWERS[kind])))
    assert_error(upload(client, sample_input), 502, "MODEL_BAD_RESPONSE")
    assert_nothing_stored(app, storage_root)


def test_non_json_answer_gives_502(requests_mock, client, app, storage_root, sample_input):
    requests_mock.post(f"{MODEL_URL}/upload", text="<html>proxy error</html>")
    assert_error(upload(client, sample_input), 502, "MODEL_BAD_RESPONSE")
    assert_nothing_stored(app, storage_root)


def test_database_failure_removes_written_files(
    app, client, model_service, storage_root, sample_input, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    def fail_commit():
        raise OperationalError("INSERT", {}, Exception("server has gone away"))

    monkeypatch.setattr(db.session, "commit", fail_commit)
    with app.app_context():
        response = upload(client, sample_input)
    assert_error(response, 503, "DATABASE_UNAVAILABLE")
    monkeypatch.undo()
    assert_nothing_stored(app, storage_root)


def test_disk_failure_removes_written_files(
    app, client, model_service, storage_root, sample_input, monkeypatch
):
    storage = app.extensions["aoi"].storage
    real_write = storage.write_temp

    def fail_on_overlay(target, data):
        if target.name == "overlay.png":
            raise OSError(28, "No space left on device")
        return real_write(target, data)

    monkeypatch.setattr(storage, "write_temp", fail_on_overlay)
    body = assert_error(upload(client, sample_input), 507, "STORAGE_ERROR")
    assert "No space left" in body["error"]
    assert_nothing_stored(app, storage_root)


@pytest.mark.parametrize(
    "change",
    [
        {"filename": "upload.jpg"},  # another call's answer (a shared name)
        {"analysis_results_shape": {"height": 100, "width": 200}},  # another image's analysis
    ],
)
def test_an_answer_for_another_image_gives_502_and_stores_nothing(
    client, requests_mock, sample_answer, sample_input, storage_root, change
):
    answer = dict(sample_answer)
    if "filename" in change:
        reply = lambda request, context: {**answer, "filename": change["filename"]}  # noqa: E731
    else:
        analysis = {**answer["analysis_results"], "image_shape": change["analysis_results_shape"]}
        echoed = echo(answer)  # the right filename, another image's shape
        reply = lambda request, context: {  # noqa: E731
            **echoed(request, context),
            "analysis_results": analysis,
        }
    requests_mock.post(f"{MODEL_URL}/upload", json=reply)
    response = upload(client, sample_input)
    assert response.status_code == 502
    assert response.get_json()["code"] == "MODEL_BAD_RESPONSE"
    assert "another image" in response.get_json()["error"]
    assert not [
        f
        for f in stored_files(storage_root)
        if f.startswith(("results/", "uploads/")) and not f.endswith(".gitkeep")
    ]


def test_timestamp_is_the_second_of_the_image_id(client, model_service, sample_input, app):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    with app.app_context():
        image = db.session.get(Image, img_id)
        assert f"{image.timestamp:%Y%m%d_%H%M%S}" == img_id[:15]
        assert image.input_image_path.startswith(f"uploads/{image.timestamp:%Y%m%d}/")


# ---- the model service's body limit -----------------------------------------------


def model_uploads(model_service):
    return [r for r in model_service.request_history if r.path == "/upload"]


def test_a_file_the_model_service_would_refuse_gets_413_before_any_call(
    make_app, model_service, storage_root
):
    """The service limits the whole body (file + form headers): a file of exactly the
    limit can never be delivered, so the agent refuses it itself."""
    app = make_app(MAX_UPLOAD_MB=1, MODEL_MAX_BODY_MB=1)
    response = upload(app.test_client(), padded_png(MB), name="exactly-1MB.png")
    body = assert_error(response, 413, "FILE_TOO_LARGE_FOR_MODEL")
    assert "exactly-1MB.png" in body["error"] and "AOI_MODEL_MAX_BODY_MB" in body["error"]
    details = body["details"]
    assert details["file_bytes"] == MB and details["model_max_body_bytes"] == MB
    assert details["request_bytes"] > MB > details["max_file_bytes"] > MB - 400
    assert model_uploads(model_service) == []
    assert_nothing_stored(app, storage_root)


def test_the_largest_deliverable_file_is_sent(make_app, model_service):
    app = make_app(MAX_UPLOAD_MB=1, MODEL_MAX_BODY_MB=1)
    refused = upload(app.test_client(), padded_png(MB), name="big.png").get_json()
    largest = refused["details"]["max_file_bytes"]
    response = upload(app.test_client(), padded_png(largest), name="big.png")
    assert response.status_code == 201, response.get_json()
    (sent,) = model_uploads(model_service)
    assert len(sent.body) == MB  # the body is exactly at the limit
    over = upload(app.test_client(), padded_png(largest + 1), name="big.png")
    assert_error(over, 413, "FILE_TOO_LARGE_FOR_MODEL")


def test_every_error_carries_details(client):
    """`details` is always there ({} when there is nothing more), as the README says."""
    answers = [
        client.post("/upload", data={"other": "x"}, content_type="multipart/form-data"),
        upload(client, b"", name="empty.png"),
        upload(client, b"not an image", name="notes.png"),
        upload(client, image_bytes(), name=""),
        client.get("/nope"),
        client.get("/upload"),
    ]
    for response in answers:
        body = response.get_json()
        assert set(body) == {"success", "error", "code", "details"}, body
        assert body["details"] == {}
