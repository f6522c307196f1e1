"""The model-service client on its own: retries, backoff, validation, identity."""

import json
import math
import threading

import msgspec
import pytest
import requests
from conftest import MODEL_HEALTH, MODEL_INFO, MODEL_URL
from helpers import echo

from aoi_flask.services.segformer import (
    ModelBadResponse,
    ModelNotLoaded,
    ModelServiceError,
    ModelTimeout,
    ModelUnavailable,
    SegformerClient,
    decode_base64,
    parse_json,
)


@pytest.fixture
def client():
    return SegformerClient(MODEL_URL, retries=2, backoff=0.001, connect_timeout=1, read_timeout=5)


@pytest.fixture
def sleeps(monkeypatch):
    recorded = []
    monkeypatch.setattr("aoi_flask.services.segformer.time.sleep", recorded.append)
    return recorded


def analyse(client, data=b"jpeg bytes"):
    return client.analyse(data, "upload.jpg", "image/jpeg")


def test_a_valid_answer_is_decoded(requests_mock, client, sample_answer, sample_images):
    requests_mock.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    answer = analyse(client)
    assert answer.images == sample_images
    assert (answer.width, answer.height, answer.total_defects) == (1792, 1792, 7)
    assert answer.processing_time == 0.6743
    sent = requests_mock.last_request
    assert sent.timeout == (1, 5)
    assert b'name="image"; filename="upload.jpg"' in sent.body


@pytest.mark.parametrize("status", [502, 503, 504])
def test_retries_on_gateway_statuses_with_exponential_backoff(
    requests_mock, client, sample_answer, sleeps, status
):
    requests_mock.post(
        f"{MODEL_URL}/upload",
        [{"status_code": status, "json": {"success": False, "error": "x"}}] * 2
        + [{"json": echo(sample_answer)}],
    )
    assert analyse(client).total_defects == 7
    assert requests_mock.call_count == 3
    assert sleeps == [0.001, 0.002]


@pytest.mark.parametrize(
    "exc", [requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout]
)
def test_retries_on_connection_errors_and_timeouts(
    requests_mock, client, sample_answer, sleeps, exc
):
    requests_mock.post(f"{MODEL_URL}/upload", [{"exc": exc}, {"json": echo(sample_answer)}])
    assert analyse(client).total_defects == 7
    assert requests_mock.call_count == 2


@pytest.mark.parametrize("status", [400, 413, 500])
def test_never_retries_client_errors_or_500(requests_mock, client, sleeps, status):
    requests_mock.post(
        f"{MODEL_URL}/upload", status_code=status, json={"success": False, "error": "不允許"}
    )
    with pytest.raises(ModelServiceError) as caught:
        analyse(client)
    assert requests_mock.call_count == 1
    assert sleeps == []
    assert caught.value.details["model_status"] == status


def test_gives_up_after_the_configured_retries(requests_mock, client, sleeps):
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ConnectionError)
    with pytest.raises(ModelUnavailable):
        analyse(client)
    assert requests_mock.call_count == 3


def test_final_503_is_model_not_loaded(requests_mock, client, sleeps):
    requests_mock.post(f"{MODEL_URL}/upload", status_code=503, json={"success": False})
    with pytest.raises(ModelNotLoaded) as caught:
        analyse(client)
    assert caught.value.headers["Retry-After"] == 30


def test_final_read_timeout_is_504(requests_mock, client, sleeps):
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ReadTimeout)
    with pytest.raises(ModelTimeout) as caught:
        analyse(client)
    assert caught.value.status == 504


def test_final_502_is_a_model_error(requests_mock, client, sleeps):
    requests_mock.post(f"{MODEL_URL}/upload", status_code=502, text="bad gateway")
    with pytest.raises(ModelServiceError) as caught:
        analyse(client)
    assert caught.value.status == 502
    assert not isinstance(caught.value, ModelBadResponse)


def test_each_thread_has_its_own_session(client):
    sessions = [client.session]
    thread = threading.Thread(target=lambda: sessions.append(client.session))
    thread.start()
    thread.join()
    assert sessions[0] is client.session
    assert sessions[1] is not sessions[0]


def test_model_identity_is_cached(requests_mock, client):
    requests_mock.get(f"{MODEL_URL}/api/model/current", json=MODEL_INFO)
    assert client.model_label() == "nvidia/segformer-b2-aoi"
    assert client.model_label() == "nvidia/segformer-b2-aoi"
    assert requests_mock.call_count == 1


def test_model_identity_unknown_when_not_loaded(requests_mock, client):
    requests_mock.get(f"{MODEL_URL}/api/model/current", status_code=503, json={"success": False})
    assert client.model_label() is None


def test_health_reports_latency_or_the_failure(requests_mock, client):
    requests_mock.get(f"{MODEL_URL}/health", json=MODEL_HEALTH)
    probe = client.health()
    assert probe["reachable"] is True and probe["body"]["device"] == "cuda"
    assert probe["latency_ms"] >= 0
    requests_mock.get(f"{MODEL_URL}/health", exc=requests.exceptions.ConnectionError)
    assert client.health()["reachable"] is False


def test_the_model_slot_is_freed_before_the_answer_is_checked(
    requests_mock, client, sample_answer, monkeypatch
):
    held = []

    class Slot:
        def __enter__(self):
            held.append(True)

        def __exit__(self, *exc):
            held.append(False)

    real_validate = client._validate

    def validate(response):
        assert held == [True, False], "the slot must be released before validation"
        return real_validate(response)

    monkeypatch.setattr(client, "_validate", validate)
    requests_mock.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    answer = client.analyse(b"jpeg bytes", "upload.jpg", "image/jpeg", slot=Slot())
    assert answer.total_defects == 7


# ---- reading the answer: msgspec first, the standard json for what it refuses ----------


def test_the_images_stay_views_into_the_answer_and_decode_from_there():
    body = json.dumps({"success": True, "mask_image": "QUJD", "analysis_results": {"a": 1.5}})
    parsed = parse_json(body.encode())
    assert isinstance(parsed["mask_image"], msgspec.Raw)
    assert parsed["success"] is True and parsed["analysis_results"] == {"a": 1.5}
    assert decode_base64(parsed["mask_image"], "mask_image") == b"ABC"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xef\xbb\xbf" + b'{"a": 1}', {"a": 1}),  # UTF-8 byte-order mark
        ('{"a": "\u00e9"}'.encode("utf-16"), {"a": "\u00e9"}),
        (b'{"a": 1e400}', {"a": math.inf}),
    ],
)
def test_what_msgspec_refuses_is_read_by_the_standard_json(body, expected):
    assert parse_json(body) == expected


def test_nan_is_read_as_json_reads_it():
    """The region checks then refuse it, as before (finite numbers only)."""
    parsed = parse_json(b'{"a": NaN, "b": 1}')
    assert math.isnan(parsed["a"]) and parsed["b"] == 1


@pytest.mark.parametrize("body", [b"not json", b'{"a": 1} trailing', b"", b'{"a": "\xff"}'])
def test_a_body_that_is_not_json_reads_as_none(body):
    assert parse_json(body) is None


def test_a_top_level_that_is_not_an_object_reads_as_json_does():
    assert parse_json(b"[1, 2]") == [1, 2]
    assert parse_json(b'"text"') == "text"


@pytest.mark.parametrize(("text", "expected"), [(b'"QUJD"', b"ABC"), (b'"QUJDRA=="', b"ABCD")])
def test_base64_in_place(text, expected):
    assert decode_base64(msgspec.Raw(text), "mask_image") == expected


def test_escaped_base64_is_read_as_json_first():
    """JSON may escape '/' as '\\/': not base64 in place, but the same text once read."""
    raw = msgspec.Raw(b'"ab\\/c"')
    assert decode_base64(raw, "mask_image") == decode_base64("ab/c", "mask_image")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'""', "is missing"),
        (b"null", "is missing"),
        (b"12", "is missing"),
        (b'"QUJ"', "not valid base64"),  # length not a multiple of 4
        (b'"QU=D"', "not valid base64"),
        (b'"QUJD\\n"', "not valid base64"),  # a newline: refused in strict mode
        (b'"QUJD="', "not valid base64"),  # padding after a full group
        ('"QUJ\u00e9"'.encode(), "not valid base64"),
    ],
)
def test_base64_verdicts(raw, reason):
    for value in (msgspec.Raw(raw), msgspec.json.decode(raw)):
        with pytest.raises(ModelBadResponse, match=reason):
            decode_base64(value, "mask_image")


def test_an_answer_with_escaped_slashes_is_accepted(requests_mock, client, sample_answer):
    """A JSON encoder that writes '/' as '\\/' (PHP, some Java ones) is fine."""
    body = json.dumps({**sample_answer, "filename": "upload.jpg"}).replace("/", "\\/")
    requests_mock.post(f"{MODEL_URL}/upload", text=body)
    answer = analyse(client)
    assert answer.images["mask"].startswith(b"\x89PNG")
