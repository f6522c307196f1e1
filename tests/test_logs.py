"""Observability: request ids, one access line per request, model-call outcomes,
text or JSON log lines (AOI_LOG_FORMAT, AOI_LOG_LEVEL)."""

import json
import logging
import re

import pytest
import requests
from conftest import MODEL_URL
from helpers import upload, upload_batch

from aoi_flask.logs import JsonFormatter, agent_handler

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def restore_logging():
    """These tests change the root level and format; put them back afterwards."""
    root = logging.getLogger()
    level = root.level
    handler = agent_handler()
    formatter = handler.formatter if handler else None
    yield
    root.setLevel(level)
    if handler is not None:
        handler.setFormatter(formatter)


def access_records(caplog):
    return [r for r in caplog.records if r.name == "aoi_flask.access"]


def model_records(caplog):
    return [r for r in caplog.records if r.name == "aoi_flask.services.segformer"]


def json_lines(text):
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


# ---- request ids and the access line ------------------------------------------------


def test_every_request_gets_an_id_and_an_access_line(client, model_service, caplog):
    caplog.set_level(logging.INFO)
    response = client.get("/health")
    request_id = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(request_id)
    (record,) = access_records(caplog)
    assert (record.method, record.path, record.status) == ("GET", "/health", 200)
    assert record.request_id == request_id
    assert isinstance(record.duration_ms, float) and record.duration_ms >= 0
    assert record.getMessage().startswith("GET /health 200 ")
    assert record.getMessage().endswith("ms")


def test_each_request_gets_its_own_id(client, model_service):
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("incoming", ["abc-123", "line-7.tool_x", "A" * 128, "0"])
def test_a_sane_incoming_request_id_is_kept(client, caplog, incoming):
    caplog.set_level(logging.INFO)
    response = client.get("/images", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming
    assert access_records(caplog)[-1].request_id == incoming


@pytest.mark.parametrize(
    "incoming",
    ["A" * 129, "has space", "semi;colon", "<script>", "ümlaut", "a/b", "tab\there", ""],
)
def test_an_insane_incoming_request_id_is_replaced(client, incoming):
    response = client.get("/images", headers={"X-Request-ID": incoming})
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])


def test_errors_are_logged_and_carry_the_id_too(make_app, caplog):
    caplog.set_level(logging.INFO)
    client = make_app(API_KEYS=["a-long-test-key-0123456789"]).test_client()
    refused = client.get("/images", headers={"X-Request-ID": "req-401"})
    assert refused.status_code == 401
    assert refused.headers["X-Request-ID"] == "req-401"
    missing = client.get("/nope", headers={"X-API-Key": "a-long-test-key-0123456789"})
    assert missing.status_code == 404 and GENERATED_ID.fullmatch(missing.headers["X-Request-ID"])
    statuses = [(r.path, r.status) for r in access_records(caplog)]
    assert statuses == [("/images", 401), ("/nope", 404)]


def test_server_errors_are_logged_as_warnings(app, client, caplog, monkeypatch):
    caplog.set_level(logging.INFO)

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["aoi"].results, "analyse_upload", explode)
    response = upload(client, b"x")
    assert response.status_code == 500
    (record,) = access_records(caplog)
    assert (record.status, record.levelno) == (500, logging.WARNING)
    assert record.request_id == response.headers["X-Request-ID"]


def test_control_characters_in_the_path_cannot_forge_log_lines(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/nope%0A2026-01-01 INFO forged line%0D%1B[31m")
    (record,) = access_records(caplog)
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "\\n2026-01-01" in message


def test_the_query_string_is_not_logged(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/images?signature=abc123secret&page=1")
    (record,) = access_records(caplog)
    assert "abc123secret" not in record.getMessage() and record.path == "/images"


def test_a_streamed_response_is_logged_when_it_is_complete(
    client, model_service, sample_input, caplog
):
    batch_id = upload_batch(client, [(sample_input, "a.jpg")]).get_json()["batch_id"]
    caplog.clear()
    caplog.set_level(logging.INFO)
    response = client.get(f"/download/batch/{batch_id}", buffered=True)
    assert response.status_code == 200 and response.data[:2] == b"PK"
    (record,) = access_records(caplog)
    assert (record.path, record.status) == (f"/download/batch/{batch_id}", 200)
    assert record.request_id == response.headers["X-Request-ID"]


# ---- model calls ----------------------------------------------------------------------


def test_a_successful_model_call_is_logged_with_its_duration(
    client, model_service, sample_input, caplog
):
    caplog.set_level(logging.INFO)
    assert upload(client, sample_input).status_code == 201
    (record,) = model_records(caplog)
    assert record.levelno == logging.INFO
    assert record.model_outcome == "ok"
    assert record.duration_ms >= 0
    assert re.search(r": 200 in \d+\.\d{3}s", record.getMessage())


@pytest.mark.parametrize(
    ("mock", "code"),
    [
        ({"exc": requests.exceptions.ConnectionError}, "MODEL_UNAVAILABLE"),
        ({"exc": requests.exceptions.ReadTimeout}, "MODEL_TIMEOUT"),
        ({"status_code": 500, "json": {"success": False, "error": "x"}}, "MODEL_ERROR"),
        ({"status_code": 503, "json": {"success": False}}, "MODEL_NOT_LOADED"),
        ({"status_code": 200, "text": "not json"}, "MODEL_BAD_RESPONSE"),
    ],
)
def test_a_failed_model_call_is_logged_with_its_outcome_and_duration(
    client, requests_mock, sample_input, caplog, mock, code
):
    caplog.set_level(logging.INFO)
    requests_mock.post(f"{MODEL_URL}/upload", **mock)
    response = upload(client, sample_input)
    assert response.get_json()["code"] == code
    (record,) = [r for r in model_records(caplog) if r.getMessage().startswith("model call")]
    assert record.levelno == logging.WARNING
    assert record.model_outcome == code
    assert record.duration_ms >= 0
    assert f"failed {code}" in record.getMessage()
    assert re.search(r" in \d+\.\d{3}s$", record.getMessage())


# ---- format, level, set-up -----------------------------------------------------------


def test_json_lines_carry_the_request_id_on_every_line(
    make_app, model_service, sample_input, capsys
):
    client = make_app(LOG_FORMAT="json").test_client()
    capsys.readouterr()
    response = upload(client, sample_input, name="晶圓.jpg")
    request_id = response.headers["X-Request-ID"]
    lines = json_lines(capsys.readouterr().err)
    model = [line for line in lines if line["logger"] == "aoi_flask.services.segformer"]
    access = [line for line in lines if line["logger"] == "aoi_flask.access"]
    assert model and access
    assert all(line["request_id"] == request_id for line in model + access)
    (line,) = access
    assert (line["method"], line["path"], line["status"]) == ("POST", "/upload", 201)
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    assert isinstance(line["duration_ms"], float)
    assert model[0]["model_outcome"] == "ok"


def test_text_lines_show_the_request_id(make_app, capsys):
    client = make_app(LOG_FORMAT="text").test_client()
    capsys.readouterr()
    response = client.get("/images", headers={"X-Request-ID": "trace-42"})
    err = capsys.readouterr().err
    assert response.headers["X-Request-ID"] == "trace-42"
    assert re.search(r"INFO \[trace-42\] aoi_flask\.access: GET /images 200 [\d.]+ms", err)


def test_lines_outside_a_request_get_a_dash(make_app, capsys):
    make_app(LOG_FORMAT="text")
    capsys.readouterr()
    logging.getLogger("aoi_flask.test").warning("no request here")
    assert "WARNING [-] aoi_flask.test: no request here" in capsys.readouterr().err


def test_exceptions_are_kept_in_json_lines(make_app, capsys):
    make_app(LOG_FORMAT="json")
    capsys.readouterr()
    try:
        raise ValueError("kaputt")
    except ValueError:
        logging.getLogger("aoi_flask.test").exception("it broke")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["message"] == "it broke" and "ValueError: kaputt" in line["exception"]


def test_the_level_is_configurable(make_app, capsys):
    make_app(LOG_LEVEL="warning")
    assert logging.getLogger().level == logging.WARNING
    capsys.readouterr()
    logging.getLogger("aoi_flask.test").info("hidden")
    assert "hidden" not in capsys.readouterr().err
    make_app(LOG_LEVEL="DEBUG")
    assert logging.getLogger().level == logging.DEBUG


def test_logging_is_configured_once_however_many_apps_are_made(make_app):
    for fmt in ("text", "json", "text"):
        make_app(LOG_FORMAT=fmt)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "aoi_handler", False)]
    assert len(ours) == 1
    assert not isinstance(ours[0].formatter, JsonFormatter)


@pytest.mark.parametrize(("setting", "value"), [("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "xml")])
def test_a_bad_setting_fails_loudly_at_start(make_app, setting, value):
    with pytest.raises(ValueError, match=f"AOI_{setting}"):
        make_app(**{setting: value})
