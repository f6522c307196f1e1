"""The circuit breaker in front of the model service: fail fast while it is down,
probe after the cool-down, close again on success (SPEC §8)."""

import threading

import pytest
import requests
from conftest import MODEL_INFO, MODEL_URL
from helpers import echo, upload, upload_batch

from aoi_flask.services.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Down(Exception):
    pass


class Refused(Exception):
    def __init__(self, retry_in):
        super().__init__(retry_in)
        self.retry_in = retry_in


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_breaker(threshold=3, cooldown=15.0):
    clock = Clock()
    breaker = CircuitBreaker(threshold, cooldown, open_error=Refused, failures=(Down,), clock=clock)
    return breaker, clock


def fail(breaker):
    with pytest.raises(Down), breaker.call():
        raise Down()


def succeed(breaker):
    with breaker.call():
        pass


def test_opens_after_threshold_consecutive_failures():
    breaker, clock = make_breaker()
    fail(breaker)
    fail(breaker)
    succeed(breaker)  # a success resets the count
    fail(breaker)
    fail(breaker)
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN
    with pytest.raises(Refused) as refused, breaker.call():
        pytest.fail("an open breaker must not let the call through")
    assert refused.value.retry_in == 15
    clock.now += 10.2
    with pytest.raises(Refused) as refused:
        breaker.check()
    assert refused.value.retry_in == 5  # rounded up
    assert breaker.snapshot()["rejected_total"] == 2


def test_half_open_lets_one_probe_through_and_closes_on_success():
    breaker, clock = make_breaker()
    for _ in range(3):
        fail(breaker)
    with pytest.raises(Refused):
        breaker.check()
    clock.now += 15
    assert breaker.state == HALF_OPEN
    breaker.check()  # does not claim the probe
    waiter_done = threading.Event()

    def another_call():
        with breaker.call():  # waits for the probe's verdict, then goes through
            waiter_done.set()

    with breaker.call():
        waiter = threading.Thread(target=another_call)
        waiter.start()
        assert not waiter_done.wait(0.2), "a second call must wait while the probe is out"
    waiter.join(5)
    assert waiter_done.is_set()
    assert breaker.state == CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 0


def test_calls_waiting_on_a_failed_probe_are_refused():
    breaker, clock = make_breaker()
    for _ in range(3):
        fail(breaker)
    clock.now += 15
    refused = []

    def another_call():
        try:
            with breaker.call():
                pass
        except Refused as exc:
            refused.append(exc.retry_in)

    with pytest.raises(Down), breaker.call():
        waiter = threading.Thread(target=another_call)
        waiter.start()
        waiter.join(0.2)
        raise Down()
    waiter.join(5)
    assert refused == [15]


def test_a_failed_probe_opens_it_for_another_cooldown():
    breaker, clock = make_breaker()
    for _ in range(3):
        fail(breaker)
    clock.now += 16
    fail(breaker)
    assert breaker.state == OPEN
    clock.now += 14
    assert breaker.state == OPEN
    clock.now += 1
    assert breaker.state == HALF_OPEN
    assert breaker.snapshot()["opened_total"] == 2


def test_an_unrelated_error_in_the_probe_frees_the_probe_slot():
    breaker, clock = make_breaker(threshold=1)
    fail(breaker)
    clock.now += 15
    with pytest.raises(KeyError), breaker.call():
        raise KeyError("not about reachability")
    assert breaker.state == HALF_OPEN
    succeed(breaker)
    assert breaker.state == CLOSED


def test_threshold_zero_disables_it():
    breaker, _ = make_breaker(threshold=0)
    for _ in range(10):
        fail(breaker)
    succeed(breaker)
    breaker.check()
    assert breaker.snapshot()["state"] == "disabled"


# ---- in the agent ---------------------------------------------------------------------------


@pytest.fixture
def down_app(make_app, requests_mock):
    """An agent whose model service refuses connections; health and model info too."""
    requests_mock.post(f"{MODEL_URL}/upload", exc=requests.ConnectionError("refused"))
    requests_mock.get(f"{MODEL_URL}/health", exc=requests.ConnectionError("refused"))
    requests_mock.get(f"{MODEL_URL}/api/model/current", exc=requests.ConnectionError("refused"))
    # Two batch workers: at most two calls are in flight when the third failure
    # opens the breaker, so "the breaker stopped the calls" holds on a busy machine.
    return make_app(MODEL_BREAKER_THRESHOLD=3, MODEL_BREAKER_COOLDOWN=30.0, BATCH_WORKERS=2)


def upload_calls(requests_mock):
    return sum(1 for r in requests_mock.request_history if r.path == "/upload")


def test_uploads_fail_fast_while_the_model_service_is_down(
    down_app, requests_mock, sample_input, sample_answer, storage_root
):
    client = down_app.test_client()
    for _ in range(3):
        response = upload(client, sample_input)
        assert response.status_code == 503
        assert response.get_json()["code"] == "MODEL_UNAVAILABLE"
    assert upload_calls(requests_mock) == 3
    fast = upload(client, sample_input)
    assert fast.status_code == 503
    body = fast.get_json()
    assert body["code"] == "MODEL_UNAVAILABLE" and body["details"]["breaker"] == "open"
    assert 1 <= int(fast.headers["Retry-After"]) <= 30
    assert upload_calls(requests_mock) == 3  # no network call
    assert not any(storage_root.rglob("*.jpg"))

    health = client.get("/health")
    assert health.status_code == 200
    breaker = health.get_json()["model_service"]["breaker"]
    assert breaker["state"] == "open" and breaker["consecutive_failures"] == 3
    assert client.get("/images").status_code == 200  # queries keep working
    assert client.get("/stats").status_code == 200

    # The cool-down passes; the service is back: the probe succeeds and closes it.
    client_breaker = down_app.extensions["aoi"].client.breaker
    client_breaker._opened_at -= 31
    requests_mock.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    requests_mock.get(f"{MODEL_URL}/api/model/current", json=MODEL_INFO)
    assert upload(client, sample_input).status_code == 201
    assert client.get("/health").get_json()["model_service"]["breaker"]["state"] == "closed"


def test_batch_files_hitting_an_open_breaker_fail_retryably(
    down_app, requests_mock, sample_input, sample_answer
):
    client = down_app.test_client()
    body = upload_batch(client, [(sample_input, f"{i}.jpg") for i in range(6)]).get_json()
    assert body["failed"] == 6
    assert {r["code"] for r in body["results"]} == {"MODEL_UNAVAILABLE"}
    assert upload_calls(requests_mock) < 6  # the breaker stopped the calls
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert all(f["retryable"] for f in status["files"])
    down_app.extensions["aoi"].client.breaker._opened_at -= 31
    requests_mock.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    requests_mock.get(f"{MODEL_URL}/api/model/current", json=MODEL_INFO)
    assert client.post(f"/batches/{body['batch_id']}/retry").status_code == 202
    down_app.extensions["aoi"].batches.wait_idle(30)
    assert client.get(f"/batches/{body['batch_id']}").get_json()["status"] == "done"
