"""Scale-out proof: 2 web processes + 2 Celery workers, one database, one storage
root, one cluster-wide model cap; one worker and one web process killed mid-batch.

    python scripts/bench_scaleout.py --database-url \\
        "mysql+pymysql://root@127.0.0.1/aoi_bench_scaleout?charset=utf8mb4" \\
        --redis-url redis://127.0.0.1:6379/14 --redis-prefix aoi-bench:

Starts the simulator (`--latency 0.5`, counting concurrent calls), two agents
(`python run.py`, waitress) and two workers (`celery -A aoi_flask.tasks worker
--pool threads`), all in distributed mode on the given Redis and a scratch MariaDB
database (reset first). Sends 200 generated wafer images as two async batches, one
half to each web process. Once a share of the items is done it kills one worker's
whole process group with SIGKILL, then the first web process, and keeps sending
single uploads to the second. Prints the most model calls seen at once (must be
<= the cap), items done / submitted, image rows and result file sets per item
(exactly 1), `flask aoi fsck`, and the throughput as a ratio of the ideal
cap / latency (goal >= 0.9). tests/test_scaleout.py runs the same with fewer images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

FINISHED = ("done", "partial", "failed")
RESULT_FILES = {"combined.png", "mask.png", "overlay.png", "analysis.json", "thumbnail.jpg"}


@dataclass
class Settings:
    images: int = 200
    latency: float = 0.5
    cap: int = 4
    size: int = 128
    worker_threads: int = 8
    kill_after: float = 0.25  # share of the items done when worker 1 is killed
    singles: int = 6  # single uploads to web 2 while web 1 is dead
    # A dead worker's slots stay taken this long (renewed every third of it while alive).
    slot_lease: float = 1.5
    # Above the longest task: slot wait + connect + read timeout (+ storing).
    item_lease: float = 12.0
    visibility: float = 15.0
    restore_interval: float = 1.0
    connect_timeout: float = 1.0
    read_timeout: float = 5.0
    gate_wait: float = 5.0
    timeout: float = 300.0


@dataclass
class Outcome:
    submitted: int = 0
    states: dict = field(default_factory=dict)
    max_active: int = 0
    model_calls: int = 0
    singles_ok: int = 0
    singles_sent: int = 0
    image_rows: int = 0
    rows_per_item: dict = field(default_factory=dict)
    file_sets_per_item: dict = field(default_factory=dict)
    result_dirs: int = 0
    taken_over: int = 0
    fsck_ok: bool = False
    fsck_output: str = ""
    window_s: float = 0.0
    throughput: float = 0.0
    steady_s: float = 0.0
    steady_throughput: float = 0.0
    ideal: float = 0.0
    batch_status: list = field(default_factory=list)
    cluster: dict = field(default_factory=dict)
    health_cluster: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)

    @property
    def done(self):
        return self.states.get("done", 0)

    @property
    def ratio(self):
        return self.throughput / self.ideal if self.ideal else 0.0

    @property
    def steady_ratio(self):
        return self.steady_throughput / self.ideal if self.ideal else 0.0


class Worker:
    """A Celery worker in its own process group, so SIGKILL takes all of it."""

    def __init__(self, name, env, threads, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        argv = [sys.executable, "-m", "celery", "-A", "aoi_flask.tasks", "worker"]
        argv += ["--pool", "threads", "--concurrency", str(threads), "-n", f"{name}@%h"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        self.process = subprocess.Popen(
            argv,
            cwd=bc.ROOT,
            # INFO: the "ready." line, and one line per model call.
            env={**os.environ, **env, "AOI_LOG_LEVEL": "INFO"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited early:\n{self.log()[-3000:]}")
            if "ready for batch items" in self.log():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready within {timeout} s")

    def kill(self):
        """SIGKILL to the worker's whole process group (by its own pid)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def kill_service(service):
    if service.process.poll() is None:
        service.process.kill()  # SIGKILL, by its own pid
        service.process.wait(10)


def clear_redis(url, prefix):
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


def cluster_env(settings, database_url, storage_root, model_url, redis_url, prefix):
    return bc.agent_env(
        database_url,
        storage_root,
        model_url,
        AOI_BROKER_URL=redis_url,
        AOI_REDIS_PREFIX=prefix,
        AOI_MODEL_MAX_CONCURRENCY=settings.cap,
        AOI_SLOT_LEASE_SECONDS=settings.slot_lease,
        AOI_ITEM_LEASE_SECONDS=settings.item_lease,
        AOI_BROKER_VISIBILITY_TIMEOUT=settings.visibility,
        AOI_BROKER_RESTORE_INTERVAL=settings.restore_interval,
        AOI_MODEL_CONNECT_TIMEOUT=settings.connect_timeout,
        AOI_MODEL_READ_TIMEOUT=settings.read_timeout,
        AOI_MODEL_RETRIES=0,
        AOI_MODEL_GATE_WAIT=settings.gate_wait,
        # Throwaway storage: the figures are about the cluster, not the disk.
        AOI_FSYNC="false",
    )


def item_counts(engine):
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, COUNT(*) FROM batch_items GROUP BY state"))
        return {state: count for state, count in rows}


def post_batch(url, files, answers, index):
    response = requests.post(
        f"{url}/upload/batch",
        params={"async": "true"},
        files=bc.multipart_files(files),
        timeout=300,
    )
    answers[index] = (time.perf_counter(), response)


def single_upload(url, name, data):
    try:
        response = requests.post(f"{url}/upload", files={"image": (name, data)}, timeout=120)
    except requests.RequestException:
        return False
    return response.status_code == 201


def run_cluster(settings, database_url, redis_url, prefix, work, say=print):
    """Run the whole scenario; returns an Outcome. The database must be migrated
    and empty, the Redis prefix unused."""
    from sqlalchemy import create_engine

    work = Path(work)
    storage_root = work / "storage"
    services, workers = [], []
    outcome = Outcome(submitted=settings.images)
    engine = create_engine(database_url)
    try:
        simulator = bc.start_simulator(settings.latency, log_dir=work)
        services.append(simulator)
        env = cluster_env(settings, database_url, storage_root, simulator.url, redis_url, prefix)
        workers = [Worker(f"w{n}", env, settings.worker_threads, work) for n in (1, 2)]
        webs = [bc.start_agent(env, threads=8, log_dir=work) for _ in range(2)]
        services.extend(webs)
        for worker in workers:
            worker.wait_ready()
        say(f"simulator {simulator.url}, web {webs[0].url} and {webs[1].url}, 2 workers ready")

        files = bc.wafer_images(settings.images + settings.singles + 2, size=settings.size)
        warm, singles = files[:2], files[2 : 2 + settings.singles]
        files = files[2 + settings.singles :]
        for web, (name, data) in zip(webs, warm, strict=True):
            if not single_upload(web.url, name, data):
                raise RuntimeError(f"warm-up upload to {web.url} failed:\n{web.log()}")
        requests.delete(f"{simulator.url}/_simulator/calls", timeout=10)

        half = len(files) // 2
        answers = {}
        posts = [
            threading.Thread(target=post_batch, args=(web.url, part, answers, n))
            for n, (web, part) in enumerate(zip(webs, (files[:half], files[half:]), strict=True))
        ]
        for post in posts:
            post.start()
        for post in posts:
            post.join()
        batch_ids = []
        for n in (0, 1):
            _, response = answers[n]
            if response.status_code != 202:
                raise RuntimeError(f"batch {n} answered {response.status_code}: {response.text}")
            batch_ids.append(response.json()["batch_id"])
        started = min(moment for moment, _ in answers.values())
        say(f"batches {batch_ids} accepted ({half} + {len(files) - half} images)")

        if settings.kill_after:
            while (item_counts(engine).get("done", 0)) < settings.kill_after * len(files):
                time.sleep(0.1)
            counts = item_counts(engine)
            workers[0].kill()
            say(f"worker w1 killed (SIGKILL to its process group) at {counts}")
            kill_service(webs[0])
            say("web 1 killed (SIGKILL); single uploads go to web 2")
        outcome.singles_sent = len(singles)
        outcome.singles_ok = sum(single_upload(webs[1].url, *item) for item in singles)
        outcome.health_cluster = requests.get(f"{webs[1].url}/health", timeout=30).json()["cluster"]

        deadline = time.monotonic() + settings.timeout
        samples = []  # (seconds since the first 202, items finished)
        while True:
            counts = item_counts(engine)
            finished = time.perf_counter()
            samples.append((finished - started, counts.get("done", 0) + counts.get("failed", 0)))
            if not counts.get("queued") and not counts.get("processing"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"batch not finished within {settings.timeout} s: {counts}")
            time.sleep(0.05)
        outcome.states = counts
        outcome.window_s = finished - started
        outcome.throughput = (len(files) + outcome.singles_ok) / outcome.window_s
        outcome.ideal = settings.cap / settings.latency
        check_storage(outcome, engine, storage_root)
        # Without the wait for the killed worker's messages (their visibility timeout):
        # until every item that was not taken over could have finished.
        steady_items = len(files) - outcome.taken_over
        outcome.steady_s = next(t for t, n in samples if n >= steady_items)
        outcome.steady_throughput = (steady_items + outcome.singles_ok) / outcome.steady_s

        for batch_id in batch_ids:
            body = requests.get(f"{webs[1].url}/batches/{batch_id}", timeout=60).json()
            outcome.batch_status.append(body["status"])
            outcome.cluster = body["cluster"]
        calls = requests.get(f"{simulator.url}/_simulator/calls", timeout=10).json()["calls"]
        outcome.max_active, outcome.model_calls = calls["max_active"], calls["total"]
        fsck = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "aoi", "fsck"],
            cwd=bc.ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        outcome.fsck_ok = fsck.returncode == 0
        outcome.fsck_output = (fsck.stdout + fsck.stderr)[-2000:]
        return outcome
    finally:
        for worker in workers:
            text = worker.log()
            outcome.logs[worker.name] = text[-4000:]
        for worker in workers:
            worker.stop()
        for service in reversed(services):
            service.stop()
        engine.dispose()


def check_storage(outcome, engine, storage_root):
    """Per item: image rows with its id, and folders holding a complete result set."""
    from sqlalchemy import text

    with engine.connect() as conn:
        items = conn.execute(
            text("SELECT img_unique_id, result_dir, attempts FROM batch_items")
        ).all()
        images = set(conn.execute(text("SELECT img_unique_id FROM images")).scalars())
    outcome.image_rows = len(images)
    outcome.taken_over = sum(1 for _, _, attempts in items if attempts > 1)
    sets = {}
    for folder in (storage_root / "results").glob("*/*"):
        names = {path.name for path in folder.iterdir()}
        outcome.result_dirs += 1
        if names == RESULT_FILES:
            sets[folder.relative_to(storage_root).as_posix()] = folder.name
    rows, file_sets = {}, {}
    for img_id, result_dir, _ in items:
        rows[img_id] = 1 if img_id in images else 0
        file_sets[img_id] = 1 if result_dir in sets else 0
    outcome.rows_per_item = histogram(rows.values())
    outcome.file_sets_per_item = histogram(file_sets.values())


def histogram(values):
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def report(settings, outcome, say=print):
    ok = verdicts(settings, outcome)
    say(
        f"max concurrent model calls: {outcome.max_active} (cap {settings.cap}: "
        f"{bc.verdict(ok['cap'])})"
    )
    say(
        f"items done / submitted: {outcome.done}/{outcome.submitted} (states {outcome.states}; "
        f"batches {outcome.batch_status}; {outcome.taken_over} item(s) taken over after the "
        f"kill): {bc.verdict(ok['done'])}"
    )
    say(
        f"image rows per item: {outcome.rows_per_item}; result file sets per item: "
        f"{outcome.file_sets_per_item}; {outcome.image_rows} image rows, "
        f"{outcome.result_dirs} result folders in all (batch items + "
        f"{outcome.singles_ok + 2} single uploads): {bc.verdict(ok['once'])}"
    )
    say(
        f"model calls: {outcome.model_calls} for {outcome.submitted} items + "
        f"{outcome.singles_sent} single uploads (the rest: calls of the killed worker, redone)"
    )
    say(
        f"single uploads while web 1 was dead: {outcome.singles_ok}/{outcome.singles_sent} "
        f"answered 201: {bc.verdict(ok['singles'])}"
    )
    say(f"flask aoi fsck: {'clean' if outcome.fsck_ok else 'PROBLEMS'}: {bc.verdict(ok['fsck'])}")
    say(f"cluster (GET /batches/{{id}} at the end): {json.dumps(outcome.cluster)}")
    say(f"cluster (/health during the run): {json.dumps(outcome.health_cluster)}")
    say(
        f"throughput: {outcome.throughput:.2f} images/s over {outcome.window_s:.1f} s (first 202 "
        f"to last item done); ideal cap/latency {outcome.ideal:.2f}/s; ratio {outcome.ratio:.3f} "
        f"(goal >= 0.9: {bc.verdict(ok['throughput'])})"
    )
    say(
        f"throughput without the {outcome.taken_over} redelivered item(s): "
        f"{outcome.steady_throughput:.2f} images/s over {outcome.steady_s:.1f} s; ratio "
        f"{outcome.steady_ratio:.3f} (the rest waited for the visibility timeout, "
        f"{settings.visibility:g} s after their delivery)"
    )
    return ok


def verdicts(settings, outcome):
    total = outcome.image_rows == outcome.submitted + outcome.singles_ok + 2
    return {
        "cap": 0 < outcome.max_active <= settings.cap,
        "done": outcome.done == outcome.submitted and outcome.batch_status == ["done", "done"],
        "once": outcome.rows_per_item == {1: outcome.submitted}
        and outcome.file_sets_per_item == {1: outcome.submitted}
        and total
        and outcome.result_dirs == outcome.image_rows,
        "singles": outcome.singles_ok == outcome.singles_sent,
        "fsck": outcome.fsck_ok,
        "throughput": outcome.ratio >= 0.9,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="scratch MariaDB DB (reset)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--redis-prefix", default="aoi-bench:")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--cap", type=int, default=4, help="AOI_MODEL_MAX_CONCURRENCY")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--worker-threads", type=int, default=8)
    parser.add_argument(
        "--slot-lease",
        type=float,
        default=Settings.slot_lease,
        help="AOI_SLOT_LEASE_SECONDS: how long the killed worker's slots stay taken",
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=Settings.kill_after,
        help="share of the items done when a worker and a web process are killed; 0: no kill",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and logs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    settings = Settings(
        images=args.images,
        latency=args.latency,
        cap=args.cap,
        size=args.size,
        worker_threads=args.worker_threads,
        kill_after=args.kill_after,
        slot_lease=args.slot_lease,
    )
    if not bc.is_mysql(args.database_url):
        raise SystemExit("the scale-out bench needs MariaDB/MySQL (several processes)")
    bc.reset_mysql_database(args.database_url)
    bc.migrate(args.database_url)
    print(bc.machine_line(args.database_url))
    print(
        f"{settings.images} images {settings.size}x{settings.size}; simulator latency "
        f"{settings.latency} s; cap {settings.cap}; 2 web processes, 2 workers x "
        f"{settings.worker_threads} threads; slot lease {settings.slot_lease} s, item lease "
        f"{settings.item_lease} s, visibility timeout {settings.visibility} s; kill after "
        f"{settings.kill_after:.0%} done"
    )
    clear_redis(args.redis_url, args.redis_prefix)
    work = Path(tempfile.mkdtemp(prefix="aoi-bench-scaleout-"))
    try:
        outcome = run_cluster(settings, args.database_url, args.redis_url, args.redis_prefix, work)
        ok = report(settings, outcome)
        print(bc.machine_line())
        return 0 if all(ok.values()) else 1
    finally:
        clear_redis(args.redis_url, args.redis_prefix)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
