"""Fault injection, end to end: nothing accepted is ever lost (SPEC §8).

The real agent is served by waitress (in a thread of this process, or as
`python run.py` in a subprocess for the kill -9 test) and talks to the bundled
simulator over loopback; the database is the suite's (SQLite, or MariaDB when
AOI_TEST_DATABASE_URL names one). After every fault and its recovery the
invariant checker (`aoi_flask.services.maintenance.check`, the code behind
`flask aoi fsck`) must find nothing: every accepted file is stored with its
four class rows and matching region counts, every stored path exists, and no
file is orphaned. Each test prints how many faults it injected.

Run alone: `python -m pytest -m faults -q`.
"""

import errno
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pymysql
import pytest
import requests
from PIL import Image as PilImage
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from waitress import create_server, wasyncore

from aoi_flask.extensions import db
from aoi_flask.models import BatchItem, DefectClass, Image, Region
from aoi_flask.services import maintenance
from aoi_flask.services import storage as storage_module
from aoi_flask.simulator import FAILURE_KINDS, SimulatorOptions, serve_in_thread

pytestmark = pytest.mark.faults

ROOT = Path(__file__).parent.parent
ON_MYSQL = os.environ.get("AOI_TEST_DATABASE_URL", "").startswith("mysql")
FINISHED = {"done", "partial", "failed"}


# ---- the pieces: simulator, served agent, images -------------------------------------------


class CountingPicker:
    """Wraps the simulator's failure picker to count every fault it injects
    (including the attempts the agent retries by itself)."""

    def __init__(self, inner):
        self.inner = inner
        self.counts = Counter()
        self._lock = threading.Lock()

    def pick(self, options):
        kind = self.inner.pick(options)
        if kind:
            with self._lock:
                self.counts[kind] += 1
        return kind


@pytest.fixture(scope="module")
def simulator():
    handle = serve_in_thread(SimulatorOptions(seed=6))
    yield handle
    handle.shutdown()


@pytest.fixture
def sim(simulator):
    """The shared simulator, healthy, with a fresh fault counter."""
    simulator.options = SimulatorOptions(seed=6)
    state = simulator.app.extensions["aoi_simulator"]
    state.failures = CountingPicker(getattr(state.failures, "inner", state.failures))
    simulator.injected = state.failures.counts
    return simulator


class ServedAgent:
    """The real app under waitress in a background thread of this process."""

    def __init__(self, app, threads=8):
        self.app = app
        self.server = create_server(app, host="127.0.0.1", port=0, threads=threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="faults-waitress", daemon=True)
        self._thread.start()

    def _serve(self):
        # waitress's own run() loops until its socket map is empty; this loop stops on request.
        while not self._stop.is_set():
            wasyncore.loop(
                timeout=0.1,
                map=self.server._map,
                use_poll=self.server.adj.asyncore_use_poll,
                count=1,
            )

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        for channel in list(self.server._map.values()):
            channel.close()
        self.server.task_dispatcher.shutdown()


@pytest.fixture
def serve():
    served = []

    def start(app, **kwargs):
        agent = ServedAgent(app, **kwargs)
        served.append(agent)
        return agent

    yield start
    for agent in served:
        agent.stop()


def wafer_png(seed, size=96):
    """A small grey wafer image with a few dark or bright spots (real defects for
    the simulator to find, so class and region rows get written)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size, size), 120, np.uint8) + rng.integers(0, 6, (size, size), np.uint8)
    rows, cols = np.ogrid[:size, :size]
    for _ in range(int(rng.integers(1, 5))):
        x, y = rng.integers(8, size - 8, 2)
        radius = int(rng.integers(2, 5))
        pixels[(cols - x) ** 2 + (rows - y) ** 2 <= radius * radius] = rng.choice([20, 240])
    buffer = io.BytesIO()
    PilImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def post_batch(url, count, *, seed=0, prefix="wafer"):
    files = [
        ("images", (f"{prefix}_{i:03d}.png", wafer_png(seed * 10_000 + i), "image/png"))
        for i in range(count)
    ]
    response = requests.post(
        f"{url}/upload/batch", params={"async": "true"}, files=files, timeout=120
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == count
    return body["batch_id"]


def batch_status(url, batch_id):
    response = requests.get(f"{url}/batches/{batch_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_batch(url, batch_id, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        body = batch_status(url, batch_id)
        if body["status"] in FINISHED:
            return body
        assert time.monotonic() < deadline, f"batch still {body['status']} after {timeout} s"
        time.sleep(0.2)


def retry_until_done(url, batch_id, rounds=6):
    """POST /batches/{id}/retry until every file is done; returns the rounds used."""
    for attempt in range(rounds + 1):
        body = wait_batch(url, batch_id)
        if body["status"] == "done":
            return attempt
        response = requests.post(f"{url}/batches/{batch_id}/retry", timeout=30)
        assert response.status_code in (200, 202), response.text
    pytest.fail(f"batch {batch_id} not done after {rounds} retries: {batch_status(url, batch_id)}")


def error_codes(body):
    return Counter(f["code"] for f in body["files"] if f["state"] == "failed")


# ---- the invariants --------------------------------------------------------------------------


def assert_everything_accounted_for(app, accepted):
    """The checker finds nothing, and every accepted file is stored completely."""
    storage = app.extensions["aoi"].storage
    with app.app_context():
        report = maintenance.check(storage)
        assert report.ok, report.to_dict(limit=20)
        items = db.session.scalars(select(BatchItem)).all()
        assert Counter(item.state for item in items) == {"done": accepted}
        images = db.session.scalar(select(func.count()).select_from(Image))
        classes = db.session.scalar(select(func.count()).select_from(DefectClass))
        regions = db.session.scalar(select(func.count()).select_from(Region))
        defects = db.session.scalar(select(func.sum(Image.total_defects))) or 0
    assert images == accepted and classes == 4 * accepted and regions == defects
    assert regions > 0, "the test images should have given the simulator defects to find"
    files = [p for top in ("uploads", "results") for p in (storage.root / top).rglob("*")]
    assert sum(p.is_file() for p in files) == accepted * 6  # input + 5 result files each
    return report


def say(capsys, text):
    with capsys.disabled():
        print(f"\n[faults] {text}", flush=True)


# ---- 1. the model service fails at random -------------------------------------------------------


def test_random_model_failures_then_recovery(make_app, sim, serve, capsys):
    """200 files in one async batch while the simulator fails 30% of its calls
    (seeded), spread over every kind: 500, 503, timeout (the agent's read timeout
    is shorter than the hang), malformed JSON, truncated base64 and success:false.
    Then the simulator recovers and POST /batches/{id}/retry runs until done."""
    app = make_app(
        MODEL_SERVICE_URL=sim.url,
        MODEL_READ_TIMEOUT=0.5,
        MODEL_RETRIES=1,
        MODEL_RETRY_BACKOFF=0.05,
        MODEL_BREAKER_COOLDOWN=1.0,
        BATCH_WORKERS=6,
        MODEL_MAX_CONCURRENCY=4,
    )
    agent = serve(app)
    config = {
        "failure_rate": 0.3,
        "failure_kinds": list(FAILURE_KINDS),
        "timeout_seconds": 1.5,
        "seed": 2024,
    }
    assert requests.post(f"{sim.url}/_simulator/config", json=config, timeout=10).ok
    started = time.monotonic()
    batch_id = post_batch(agent.url, 200)
    first = wait_batch(agent.url, batch_id, timeout=120)
    codes = error_codes(first)
    assert first["processed"] + first["failed"] == 200
    assert first["failed"] > 0, "a 30% failure rate should fail some files"
    assert set(sim.injected) == set(FAILURE_KINDS), sim.injected
    assert set(codes) <= {
        "MODEL_ERROR",
        "MODEL_NOT_LOADED",
        "MODEL_TIMEOUT",
        "MODEL_BAD_RESPONSE",
        "MODEL_UNAVAILABLE",
    }, codes

    assert requests.post(f"{sim.url}/_simulator/config", json={"failure_rate": 0}, timeout=10).ok
    rounds = retry_until_done(agent.url, batch_id)
    report = assert_everything_accounted_for(app, 200)
    injected = dict(sorted(sim.injected.items()))
    say(
        capsys,
        f"random model failures: {sum(injected.values())} faults injected {injected}; after "
        f"the first pass {first['processed']} done, {first['failed']} failed {dict(codes)}; "
        f"{rounds} retry round(s) to done; checker: {report.summary()} "
        f"({report.scanned}) in {time.monotonic() - started:.1f} s",
    )


# ---- 2a. the database connection is dropped mid-batch (MariaDB) -----------------------------


def kill_agent_connections(database_url):
    """From a second session: KILL every connection to the agent's database."""
    url = make_url(database_url)
    conn = pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.username, password=url.password or ""
    )
    killed = 0
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST "
                "WHERE DB = %s AND ID <> CONNECTION_ID()",
                (url.database,),
            )
            for (connection_id,) in cursor.fetchall():
                try:
                    cursor.execute(f"KILL {int(connection_id)}")
                    killed += 1
                except pymysql.MySQLError:
                    pass  # it ended by itself meanwhile
    finally:
        conn.close()
    return killed


def clear_database_answer(response):
    """503 DATABASE_UNAVAILABLE (or /health's 503 "down"), in the JSON error shape."""
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 503 and (
        body.get("code") == "DATABASE_UNAVAILABLE" or body.get("status") == "down"
    )


class Poller(threading.Thread):
    """Keeps asking the agent for batch progress, history and health; records answers."""

    def __init__(self, url, batch_id):
        super().__init__(daemon=True)
        self.url, self.batch_id = url, batch_id
        self.statuses = Counter()
        self.bad = []
        self._halt = threading.Event()

    def run(self):
        paths = [f"/batches/{self.batch_id}", "/images?limit=5", "/health", "/stats"]
        while not self._halt.is_set():
            for path in paths:
                try:
                    response = requests.get(self.url + path, timeout=20)
                except requests.RequestException as exc:
                    self.bad.append(f"{path}: {exc}")
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code != 200 and not clear_database_answer(response):
                    self.bad.append(f"{path}: {response.status_code} {response.text[:300]}")
            time.sleep(0.05)

    def stop(self):
        self._halt.set()
        self.join(30)


@pytest.mark.skipif(not ON_MYSQL, reason="KILLs server connections: needs MariaDB/MySQL")
def test_database_connections_killed_mid_batch(make_app, sim, serve, capsys):
    """While a batch runs, a second session KILLs every connection of the agent,
    three times. The agent answers clearly (200, or 503 DATABASE_UNAVAILABLE, or a
    per-file error), keeps serving, and recovers without a restart (pool_pre_ping);
    a retry completes the batch."""
    app = make_app(MODEL_SERVICE_URL=sim.url, BATCH_WORKERS=6, MODEL_MAX_CONCURRENCY=4)
    agent = serve(app)
    sim.options.latency = 0.05
    batch_id = post_batch(agent.url, 80, seed=2)
    poller = Poller(agent.url, batch_id)
    poller.start()
    killed = []
    for _ in range(3):
        time.sleep(0.6)
        killed.append(kill_agent_connections(app.config["SQLALCHEMY_DATABASE_URI"]))
    first = wait_batch(agent.url, batch_id)
    poller.stop()
    sim.options.latency = 0.0
    assert not poller.bad, poller.bad[:5]
    health = requests.get(f"{agent.url}/health", timeout=10).json()
    assert health["database"]["reachable"] is True
    rounds = retry_until_done(agent.url, batch_id)
    report = assert_everything_accounted_for(app, 80)
    say(
        capsys,
        f"database connections killed: {sum(killed)} connections in 3 rounds {killed}; "
        f"answers during the outage {dict(poller.statuses)}; first pass "
        f"{first['processed']} done, {first['failed']} failed {dict(error_codes(first))}; "
        f"{rounds} retry round(s); checker: {report.summary()}",
    )


# ---- 2b. writes to the results folder fail ---------------------------------------------------


class FailingWrite:
    """A file handle whose write stores half the bytes, then fails like a full disk."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.handle.close()

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (injected)")


class DiskFullForResults:
    """Stands in for the `os` module inside aoi_flask.services.storage: a share of
    the writes under results/ fail half-way with ENOSPC. Everything else is the
    real `os`."""

    def __init__(self, results_root, share, seed):
        self.results_root = str(results_root)
        self.share = share
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        target = os.readlink(f"/proc/self/fd/{fd}")
        with self.lock:
            fail = target.startswith(self.results_root) and self.rng.random() < self.share
            self.injected += fail
        return FailingWrite(handle) if fail else handle


def test_results_folder_write_failures(make_app, sim, serve, storage_root, monkeypatch, capsys):
    """Writes under results/ fail with ENOSPC (a share of them, half-way through the
    temporary file) while a batch and single uploads run.

    Method, honestly: tests run as root, where a read-only chmod does not stop
    writes, so the failure is injected in-process: the `os` module that
    aoi_flask.services.storage uses is replaced for the duration by a proxy whose
    fdopen() hands back a handle that writes half the bytes and then raises
    OSError(ENOSPC), for files under results/ only. The agent's own clean-up
    paths (temporary file removal, result removal, failed-and-retryable items)
    run for real. Afterwards the real `os` is back and a retry completes."""
    app = make_app(MODEL_SERVICE_URL=sim.url, BATCH_WORKERS=4, MODEL_MAX_CONCURRENCY=4)
    agent = serve(app)
    disk = DiskFullForResults(Path(storage_root).resolve() / "results", share=0.15, seed=11)
    monkeypatch.setattr(storage_module, "os", disk)
    batch_id = post_batch(agent.url, 40, seed=3)
    singles = Counter()
    for i in range(6):
        files = {"image": (f"single_{i}.png", wafer_png(900 + i), "image/png")}
        response = requests.post(f"{agent.url}/upload", files=files, timeout=60)
        singles[response.status_code] += 1
        if response.status_code != 201:
            assert response.status_code == 507, response.text
            assert response.json()["code"] == "STORAGE_ERROR"
    first = wait_batch(agent.url, batch_id)
    monkeypatch.undo()
    assert first["failed"] > 0 and set(error_codes(first)) == {"STORAGE_ERROR"}
    rounds = retry_until_done(agent.url, batch_id)
    stored_singles = singles[201]
    with app.app_context():
        report = maintenance.check(app.extensions["aoi"].storage)
        assert report.ok, report.to_dict(limit=20)
        assert db.session.scalar(select(func.count()).select_from(Image)) == 40 + stored_singles
    leftovers = [p for p in Path(storage_root).rglob(".tmp-*")]
    assert leftovers == []
    say(
        capsys,
        f"results-folder write failures: {disk.injected} writes failed with ENOSPC; batch "
        f"first pass {first['processed']} done, {first['failed']} failed "
        f"{dict(error_codes(first))}; single uploads {dict(singles)} (507 left nothing "
        f"behind); {rounds} retry round(s); checker: {report.summary()}",
    )


# ---- 3. the agent process is killed (SIGKILL) mid-batch ------------------------------------------


class AgentProcess:
    """`python run.py` in a subprocess, as an administrator would run it."""

    def __init__(self, env, log_path):
        self.env, self.log_path = env, log_path
        self.process = None

    def start(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop)
        self._log = log
        self.process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            try:
                requests.get(f"{self.url}/health", timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        pytest.fail("run.py did not answer within 60 s:\n" + self.log_tail())

    def kill(self):
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process:
            self._log.close()

    def log_tail(self):
        return Path(self.log_path).read_text(errors="replace")[-3000:]


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_agent_killed_mid_batch_resumes_on_restart(make_app, sim, storage_root, tmp_path, capsys):
    """`python run.py` is killed with SIGKILL while a batch runs; started again, its
    start-up hook (recover_unfinished + resubmit) requeues the files left queued or
    processing, clears their partial results, and the batch completes (with a retry
    for anything that failed)."""
    app = make_app()  # the suite's fresh database and storage, shared with the subprocess
    env = {
        **os.environ,
        "AOI_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "AOI_STORAGE_ROOT": str(storage_root),
        "AOI_MODEL_SERVICE_URL": sim.url,
        "AOI_MODEL_RETRIES": "0",
        "AOI_BATCH_WORKERS": "4",
        "AOI_MODEL_MAX_CONCURRENCY": "4",
        "AOI_LOG_LEVEL": "WARNING",
    }
    env.pop("AOI_TEST_DATABASE_URL", None)
    sim.options.latency = 0.15
    first = AgentProcess(env, tmp_path / "agent.log").start()
    second = None
    try:
        batch_id = post_batch(first.url, 80, seed=4)
        deadline = time.monotonic() + 60
        while True:  # kill it in the middle: some files done, many still to go
            body = batch_status(first.url, batch_id)
            if body["processed"] >= 8:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        first.kill()
        with app.app_context():
            at_kill = Counter(db.session.scalars(select(BatchItem.state)).all())
        assert at_kill["queued"] + at_kill["processing"] > 0, at_kill
        sim.options.latency = 0.0
        second = AgentProcess(env, tmp_path / "agent.log").start()
        resumed = wait_batch(second.url, batch_id)
        rounds = retry_until_done(second.url, batch_id)
        report = assert_everything_accounted_for(app, 80)
    finally:
        first.stop()
        if second:
            second.stop()
    say(
        capsys,
        f"agent killed (SIGKILL) mid-batch: states at the kill {dict(at_kill)}; after the "
        f"restart's resume {resumed['processed']} done, {resumed['failed']} failed; "
        f"{rounds} retry round(s); checker: {report.summary()}",
    )
