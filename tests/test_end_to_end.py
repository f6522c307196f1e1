"""The real agent against the bundled model-service simulator over loopback HTTP."""

import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from helpers import image_bytes, padded_png, stored_files, upload, upload_batch

from aoi_flask.simulator import SimulatorOptions, serve_in_thread

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def simulator():
    handle = serve_in_thread(SimulatorOptions(seed=7))
    yield handle
    handle.shutdown()


@pytest.fixture
def sim(simulator):
    """The shared simulator, reset to healthy defaults for each test."""
    simulator.options = SimulatorOptions(seed=7)
    return simulator


@pytest.fixture
def e2e_app(make_app, sim):
    # Generous: the machine may be busy. The timeout test sets its own.
    return make_app(MODEL_SERVICE_URL=sim.url, MODEL_READ_TIMEOUT=60.0, MODEL_RETRIES=1)


@pytest.fixture
def e2e(e2e_app):
    return e2e_app.test_client()


def test_sample_through_the_simulator_is_stored_and_served(e2e, sample_input):
    response = upload(e2e, sample_input)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    img_id = body["img_unique_id"]
    assert body["total_defects"] == sum(body["defect_classes"].values())
    assert "simulator" in body["model"]
    regions = e2e.get(f"/images/{img_id}/regions").get_json()
    analysis = e2e.get(f"/download/json/{img_id}").get_json()
    for group in regions["classes"]:
        key = f"{group['class_id']}_{group['class_name']}"
        expected = analysis["classes"][key]["regions"]
        got = [
            {k: v for k, v in r.items() if k not in ("region_unique_id", "review")}
            for r in group["regions"]
        ]
        assert got == expected
    assert e2e.get(f"/download/image/{img_id}/input").data == sample_input
    mask = e2e.get(f"/download/image/{img_id}/mask")
    assert mask.mimetype == "image/png" and mask.data.startswith(b"\x89PNG")


def test_health_labels_the_simulator(e2e):
    body = e2e.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["model_service"]["simulator"] is True
    assert body["model_service"]["model_loaded"] is True
    assert body["model_service"]["device"] == "cpu"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("500", 502, "MODEL_ERROR"),
        ("503", 503, "MODEL_NOT_LOADED"),
        ("malformed", 502, "MODEL_BAD_RESPONSE"),
        ("truncated", 502, "MODEL_BAD_RESPONSE"),
        ("success_false", 502, "MODEL_BAD_RESPONSE"),
        ("timeout", 504, "MODEL_TIMEOUT"),
    ],
)
def test_simulated_failures_map_to_clear_errors(make_app, sim, storage_root, kind, status, code):
    client = make_app(MODEL_SERVICE_URL=sim.url, MODEL_READ_TIMEOUT=1.0).test_client()
    sim.options.timeout_seconds = 5
    sim.options.failure_kinds = [kind]
    sim.options.failure_rate = 1.0
    response = upload(client, image_bytes(), name="x.png")
    assert response.status_code == status
    assert response.get_json()["code"] == code
    if status == 503:
        assert response.headers["Retry-After"]
    assert stored_files(storage_root) == []


def test_model_not_loaded(e2e, sim, storage_root):
    sim.options.model_loaded = False
    response = upload(e2e, image_bytes(), name="x.png")
    assert response.status_code == 503
    assert response.get_json()["code"] == "MODEL_NOT_LOADED"
    assert e2e.get("/health").get_json()["status"] == "degraded"


def test_model_service_down(make_app, storage_root):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    app = make_app(MODEL_SERVICE_URL=f"http://127.0.0.1:{port}", MODEL_CONNECT_TIMEOUT=1.0)
    client = app.test_client()
    response = upload(client, image_bytes(), name="x.png")
    assert response.status_code == 503
    assert response.get_json()["code"] == "MODEL_UNAVAILABLE"
    assert stored_files(storage_root) == []
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "degraded"


def test_batch_with_failures_then_retry_completes_everything(e2e, e2e_app, sim):
    sim.options.failure_kinds = ["500"]
    sim.options.failure_rate = 0.5
    files = [(image_bytes(size=(96, 96)), f"f{i}.png") for i in range(8)]
    body = upload_batch(e2e, files).get_json()
    assert body["processed"] + body["failed"] == 8
    assert body["failed"] > 0, "the simulator should have failed some files"
    sim.options.failure_rate = 0.0
    retry = e2e.post(f"/batches/{body['batch_id']}/retry").get_json()
    assert retry["retried"] == body["failed"]
    e2e_app.extensions["aoi"].batches.wait_idle(60)
    status = e2e.get(f"/batches/{body['batch_id']}").get_json()
    assert status["status"] == "done" and status["processed"] == 8
    archive = zipfile.ZipFile(io.BytesIO(e2e.get(f"/download/batch/{body['batch_id']}").data))
    assert sum(name.endswith("/analysis.json") for name in archive.namelist()) == 8


def test_the_model_body_limit_matches_the_service(e2e, sim, storage_root):
    """At the defaults (50 MiB, as the service's MAX_CONTENT_LENGTH) a file of exactly
    the limit is the agent's own 413; the largest file it accepts the service takes."""
    limit = 50 * 1024 * 1024
    refused = upload(e2e, padded_png(limit), name="exactly-50MiB.png")
    assert refused.status_code == 413
    body = refused.get_json()
    assert body["code"] == "FILE_TOO_LARGE_FOR_MODEL"
    assert stored_files(storage_root) == []
    largest = body["details"]["max_file_bytes"]
    assert upload(e2e, padded_png(largest), name="largest.png").status_code == 201
    # One byte more is what the service itself refuses (with a 500).
    name = "20260101_000000_abcdef.png"  # as long as the names the agent sends
    direct = requests.post(
        f"{sim.url}/upload",
        files={"image": (name, padded_png(largest + 1), "image/png")},
        timeout=60,
    )
    assert direct.status_code == 500


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_py_demo_serves_the_whole_flow(tmp_path, sample_input):
    """The README's run command: waitress plus the simulator, on a fresh SQLite database."""
    port = free_port()
    env = {
        **os.environ,
        "AOI_DATABASE_URL": f"sqlite:///{tmp_path}/demo.sqlite3",
        "AOI_STORAGE_ROOT": str(tmp_path / "data"),
    }
    env.pop("AOI_TEST_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "run.py", "--demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                health = requests.get(f"{base}/health", timeout=2).json()
                break
            except requests.RequestException:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.2)
        else:
            pytest.fail("run.py --demo did not answer within 30 s")
        assert health["status"] == "ok" and health["model_service"]["simulator"] is True
        files = {"image": ("segformer_input.jpeg", sample_input, "image/jpeg")}
        response = requests.post(f"{base}/upload", files=files, timeout=60)
        assert response.status_code == 201
        img_id = response.json()["img_unique_id"]
        assert (
            requests.get(f"{base}/download/image/{img_id}/input", timeout=10).content
            == sample_input
        )
    finally:
        process.terminate()
        process.wait(10)
