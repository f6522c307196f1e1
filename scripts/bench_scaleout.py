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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    # The README's advice: AOI_MODEL_MAX_CONCURRENCY + 4 threads per worker.
    worker_threads: int = 8
    kill_after: float = 0.25  # share of the items done when worker 1 is killed
    singles: int = 6  # single uploads to web 2 while web 1 is dead
    # Every other setting is the agent's default (README), unless given here as
    # AOI_* name -> value (e.g. {"AOI_SLOT_EXIT_GRACE_SECONDS": 2} to try another).
    overrides: dict = field(default_factory=dict)
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
    requeued: list = field(default_factory=list)  # (seconds after the kill, items) per sweep
    cpu: dict = field(default_factory=dict)  # CPU seconds of the processes still running
    retaken_after_kill: list = field(default_factory=list)  # seconds, per item taken over
    ideal: float = 0.0
    batch_status: list = field(default_factory=list)
    timeline: list = field(default_factory=list)  # [start, end] of each model call (epoch s)
    started_wall: float = 0.0
    killed_wall: float = 0.0
    finished_wall: float = 0.0
    cluster: dict = field(default_factory=dict)
    health_cluster: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)

    @property
    def done(self):
        return self.states.get("done", 0)

    @property
    def ratio(self):
        return self.throughput / self.ideal if self.ideal else 0.0


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
            env={**clean_environ(env), "AOI_LOG_LEVEL": "INFO"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.process.pid

    cpu_seconds = bc.Service.cpu_seconds

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


REQUEUED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*requeued (\d+) batch item\(s\) after",
    re.MULTILINE,
)


def requeues_in(log_text, killed_wall):
    """(seconds after the kill, items) of each sweep that requeued an exited worker's items."""
    if not killed_wall:
        return []
    found = []
    for stamp, count in REQUEUED.findall(log_text):
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
        found.append((moment - killed_wall, int(count)))
    return found


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
    """The agents' environment: the defaults except the scenario's own settings.
    AOI_* variables of the calling shell are not passed on."""
    return bc.agent_env(
        database_url,
        storage_root,
        model_url,
        AOI_BROKER_URL=redis_url,
        AOI_REDIS_PREFIX=prefix,
        AOI_MODEL_MAX_CONCURRENCY=settings.cap,
        **settings.overrides,
    )


def effective_settings(env):
    """The distributed-mode settings the agents run with (defaults and derived values),
    read as they read them."""
    code = (
        "import json; from aoi_flask.config import Config as C; from aoi_flask import tasks; "
        "c = {k: getattr(C, k) for k in dir(C) if k.isupper()}; "
        "print(json.dumps({'slot lease': c['SLOT_LEASE_SECONDS'], "
        "'slot exit grace': c['SLOT_EXIT_GRACE_SECONDS'], 'model gate wait': "
        "c['MODEL_GATE_WAIT'], 'model read timeout': c['MODEL_READ_TIMEOUT'], "
        "'model retries': c['MODEL_RETRIES'], 'item lease': tasks.item_lease(c), "
        "'visibility timeout': tasks.visibility_timeout(c), 'fsync': c['FSYNC']}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=bc.ROOT,
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def clean_environ(env):
    """This environment without AOI_* variables, plus `env`."""
    return {**bc.inherited_environ(clean=True), **env}


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
        webs = [bc.start_agent(env, threads=8, log_dir=work, clean=True) for _ in range(2)]
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
        outcome.started_wall = time.time() - (time.perf_counter() - started)
        say(f"batches {batch_ids} accepted ({half} + {len(files) - half} images)")

        if settings.kill_after:
            while (item_counts(engine).get("done", 0)) < settings.kill_after * len(files):
                time.sleep(0.1)
            counts = item_counts(engine)
            workers[0].kill()
            outcome.killed_wall = time.time()
            say(f"worker w1 killed (SIGKILL to its process group) at {counts}")
            kill_service(webs[0])
            say("web 1 killed (SIGKILL); single uploads go to web 2")
        outcome.singles_sent = len(singles)
        outcome.singles_ok = sum(single_upload(webs[1].url, *item) for item in singles)
        outcome.health_cluster = requests.get(f"{webs[1].url}/health", timeout=30).json()["cluster"]

        deadline = time.monotonic() + settings.timeout
        while True:
            counts = item_counts(engine)
            finished = time.perf_counter()
            if not counts.get("queued") and not counts.get("processing"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"batch not finished within {settings.timeout} s: {counts}")
            time.sleep(0.05)
        outcome.states = counts
        outcome.finished_wall = outcome.started_wall + (finished - started)
        check_storage(outcome, engine, storage_root)

        for batch_id in batch_ids:
            body = requests.get(f"{webs[1].url}/batches/{batch_id}", timeout=60).json()
            outcome.batch_status.append(body["status"])
            outcome.cluster = body["cluster"]
        calls = requests.get(
            f"{simulator.url}/_simulator/calls", params={"timeline": "true"}, timeout=10
        ).json()["calls"]
        outcome.timeline = calls["timeline"]
        # From the first 202, or the first model call if a worker was quicker (the
        # items are enqueued before the answer leaves), to the last item done.
        first_call = min((start for start, _ in outcome.timeline), default=outcome.started_wall)
        outcome.started_wall = min(outcome.started_wall, first_call)
        outcome.window_s = outcome.finished_wall - outcome.started_wall
        outcome.throughput = (len(files) + outcome.singles_ok) / outcome.window_s
        outcome.ideal = settings.cap / settings.latency
        outcome.max_active, outcome.model_calls = calls["max_active"], calls["total"]
        fsck = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "aoi", "fsck"],
            cwd=bc.ROOT,
            env=clean_environ(env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        outcome.cpu = {
            "worker w2": workers[1].cpu_seconds(),
            "web 2": webs[1].cpu_seconds(),
            "simulator": simulator.cpu_seconds(),
        }
        outcome.fsck_ok = fsck.returncode == 0
        outcome.fsck_output = (fsck.stdout + fsck.stderr)[-2000:]
        return outcome
    finally:
        for worker in workers:
            text = worker.log()
            outcome.logs[worker.name] = text[-4000:]
            outcome.requeued += requeues_in(text, outcome.killed_wall)
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
            text("SELECT img_unique_id, result_dir, attempts, started_at FROM batch_items")
        ).all()
        images = set(conn.execute(text("SELECT img_unique_id FROM images")).scalars())
    outcome.image_rows = len(images)
    retaken = [started for _, _, attempts, started in items if attempts > 1]
    outcome.taken_over = len(retaken)
    if outcome.killed_wall:
        # started_at: the last claim, UTC to the second.
        killed = datetime.fromtimestamp(outcome.killed_wall, UTC).replace(tzinfo=None)
        outcome.retaken_after_kill = sorted((s - killed).total_seconds() for s in retaken)
    sets = {}
    for folder in (storage_root / "results").glob("*/*"):
        names = {path.name for path in folder.iterdir()}
        outcome.result_dirs += 1
        if names == RESULT_FILES:
            sets[folder.relative_to(storage_root).as_posix()] = folder.name
    rows, file_sets = {}, {}
    for img_id, result_dir, _, _ in items:
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
        f"batches {outcome.batch_status}): {bc.verdict(ok['done'])}"
    )
    if outcome.killed_wall:
        after = outcome.retaken_after_kill
        when = f", run again {after[0]:.0f}-{after[-1]:.0f} s after the kill" if after else ""
        sweeps = "; ".join(f"{n} at +{t:.1f} s" for t, n in outcome.requeued) or "none"
        say(
            f"items of the killed worker taken over: {outcome.taken_over}{when}; enqueued "
            f"again by the sweep after the kill (its items, and any queued one whose message "
            f"was not waiting in the queue): {sweeps}"
        )
    say(
        f"image rows per item: {outcome.rows_per_item}; result file sets per item: "
        f"{outcome.file_sets_per_item}; {outcome.image_rows} image rows, "
        f"{outcome.result_dirs} result folders in all (batch items + "
        f"{outcome.singles_ok + 2} single uploads): {bc.verdict(ok['once'])}"
    )
    killed = bool(outcome.killed_wall)
    say(
        f"model calls: {outcome.model_calls} for {outcome.submitted} items + "
        f"{outcome.singles_sent} single uploads"
        + (" (the rest: calls of the killed worker, redone)" if killed else "")
    )
    say(
        f"single uploads {'while web 1 was dead' if killed else 'to web 2'}: "
        f"{outcome.singles_ok}/{outcome.singles_sent} answered 201: {bc.verdict(ok['singles'])}"
    )
    say(f"flask aoi fsck: {'clean' if outcome.fsck_ok else 'PROBLEMS'}: {bc.verdict(ok['fsck'])}")
    say(f"cluster (GET /batches/{{id}} at the end): {json.dumps(outcome.cluster)}")
    say(f"cluster (/health during the run): {json.dumps(outcome.health_cluster)}")
    say(
        f"throughput: {outcome.throughput:.2f} images/s over {outcome.window_s:.1f} s (first 202 "
        f"or first model call, whichever came first, to last item done); ideal cap/latency "
        f"{outcome.ideal:.2f}/s; ratio {outcome.ratio:.3f} (goal >= 0.9: "
        f"{bc.verdict(ok['throughput'])})"
    )
    report_time(settings, outcome, say)
    if outcome.cpu:
        cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in outcome.cpu.items())
        say(f"CPU seconds of the surviving processes over the whole run: {cpu}")
    return ok


def busy_profile(spans, start, end, step):
    """Mean model calls in flight in each `step`-second bin of [start, end)."""
    bins = [0.0] * max(1, int((end - start) / step + 0.999))
    for call_start, call_end in spans:
        lo, hi = max(call_start, start), min(call_end, end)
        while lo < hi:
            index = min(int((lo - start) / step), len(bins) - 1)
            edge = min(hi, start + (index + 1) * step)
            bins[index] += (edge - lo) / step
            lo = edge
    return bins


def idle_slot_seconds(spans, start, end, cap):
    """Slot-seconds with fewer than `cap` calls in flight within [start, end)."""
    events = sorted([(max(a, start), 1) for a, b in spans if b > start and a < end])
    events += sorted([(min(b, end), -1) for a, b in spans if b > start and a < end])
    events.sort()
    idle, active, moment = 0.0, 0, start
    for when, change in events:
        idle += max(0, cap - active) * (when - moment)
        active += change
        moment = when
    return idle + max(0, cap - active) * (end - moment)


def where_time_went(settings, outcome):
    """The ratio to ideal taken apart: every slot-second of the window (cap x window)
    was a model call of an item (latency), a call's time over the latency, a call
    redone (the killed worker's), or a slot left idle (by phase)."""
    spans = [(a, b) for a, b in outcome.timeline if b > outcome.started_wall]
    if not spans or not outcome.window_s:
        return {}
    cap, t0, t1 = settings.cap, outcome.started_wall, outcome.finished_wall
    total = cap * (t1 - t0)
    durations = [b - a for a, b in spans]
    useful = outcome.submitted + outcome.singles_ok
    first_start, last_start = min(a for a, _ in spans), max(a for a, _ in spans)
    kill = outcome.killed_wall or None
    marks = [t0, first_start]
    names = ["before the first call"]
    if kill and first_start < kill < last_start:
        marks += [kill, min(kill + 5.0, last_start)]
        names += ["running, before the kill", "the 5 s after the kill"]
        names += ["running, after that"]
    else:
        names += ["running"]
    marks += [last_start, t1]
    names += ["after the last call started"]
    idle = {
        name: idle_slot_seconds(spans, lo, hi, cap) / total
        for name, lo, hi in zip(names, marks[:-1], marks[1:], strict=True)
    }
    return {
        "calls": len(spans),
        "mean_call_s": sum(durations) / len(durations),
        "share_items": useful * settings.latency / total,
        "share_overrun": sum(d - settings.latency for d in durations) / total,
        "share_redone": max(0, len(spans) - useful) * settings.latency / total,
        "idle": idle,
        "profile": busy_profile(spans, t0, t1, 1.0),
    }


def report_time(settings, outcome, say=print):
    parts = where_time_went(settings, outcome)
    if not parts:
        return
    idle = ", ".join(f"{name} {share:.3f}" for name, share in parts["idle"].items())
    say(
        f"where the slot time went (shares of cap x window): item calls at the nominal latency "
        f"{parts['share_items']:.3f}; calls over it {parts['share_overrun']:.3f} (mean call "
        f"{parts['mean_call_s']:.3f} s at the simulator); calls redone "
        f"{parts['share_redone']:.3f}; idle slots {sum(parts['idle'].values()):.3f} ({idle})"
    )
    profile = " ".join(f"{busy:.1f}" for busy in parts["profile"])
    say(f"model calls in flight, mean per second of the window: {profile}")


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
    parser.add_argument("--images", type=int, default=Settings.images)
    parser.add_argument("--latency", type=float, default=Settings.latency)
    parser.add_argument("--cap", type=int, default=Settings.cap, help="AOI_MODEL_MAX_CONCURRENCY")
    parser.add_argument("--size", type=int, default=Settings.size, help="image side in pixels")
    parser.add_argument("--worker-threads", type=int, default=Settings.worker_threads)
    parser.add_argument(
        "--kill-after",
        type=float,
        default=Settings.kill_after,
        help="share of the items done when a worker and a web process are killed; 0: no kill",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="AOI_NAME=VALUE",
        help="run the agents with this setting instead of its default (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and logs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings(
        images=args.images,
        latency=args.latency,
        cap=args.cap,
        size=args.size,
        worker_threads=args.worker_threads,
        kill_after=args.kill_after,
        overrides=overrides,
    )
    if not bc.is_mysql(args.database_url):
        raise SystemExit("the scale-out bench needs MariaDB/MySQL (several processes)")
    bc.reset_mysql_database(args.database_url)
    bc.migrate(args.database_url)
    print(bc.machine_line(args.database_url))
    effective = effective_settings({"AOI_MODEL_MAX_CONCURRENCY": str(settings.cap), **overrides})
    print(
        f"{settings.images} images {settings.size}x{settings.size}; simulator latency "
        f"{settings.latency} s; cap {settings.cap}; 2 web processes, 2 workers x "
        f"{settings.worker_threads} threads; kill after {settings.kill_after:.0%} done"
    )
    print(
        f"agent settings ({'defaults, except ' + ', '.join(args.set) if args.set else 'defaults'}"
        f"): {', '.join(f'{name} {value}' for name, value in effective.items())}"
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
