"""Load test: many concurrent clients against the real agent and the simulator.

Starts the model-service simulator (latency 0) and the agent (`python run.py`,
waitress) as subprocesses on free loopback ports, with a temporary storage
folder and a SQLite database (default) or a scratch MariaDB database
(`--database mariadb`, default `aoi_load`, which is dropped and migrated; the
suite's `aoi_test` is refused). Then N client threads (default 50) run for a
fixed time (default 60 s) a mix of single uploads, small batches, history
queries, region searches and downloads, and the script prints requests/s,
p50/p95/p99 per kind, error counts by status, and the agent's own overhead per
upload: the client's total time minus the model time the simulator reports
(`processing_time_seconds`). It stops by itself and always stops what it started.

    python scripts/load_test.py                      # 50 clients, 60 s, SQLite
    python scripts/load_test.py --database mariadb   # scratch MariaDB `aoi_load`
    python scripts/load_test.py --clients 10 --duration 15 --think 0.1
    python scripts/load_test.py --model stub         # real-size answers (12.9 MB each)

`--model stub` replaces the simulator by scripts/model_stub.py, which answers every
upload at once with the recorded sample (three 1792x1792 PNGs, 12.9 MB of JSON); the
clients then upload the sample's 1792x1792 JPEG input.

Targets on a 2-core machine: overhead p50 <= 50 ms and p95 <= 150 ms, and no
5xx answer except deliberate 503 MODEL_BUSY (the model-slot cap at work).
"""

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402
import model_stub  # noqa: E402

DEFAULT_MARIADB = "mysql+pymysql://root@127.0.0.1:3306/aoi_load?charset=utf8mb4"
CLASSES = ("PI_Particle", "PR_Peeling", "Copper_Nodule", "Env_Particle")
KINDS = ("upload", "batch", "history", "regions", "download")
DEFAULT_MIX = "upload=25,batch=5,history=30,regions=20,download=20"
OVERHEAD_TARGETS_MS = {"p50": 50.0, "p95": 150.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--database", choices=("sqlite", "mariadb"), default="sqlite")
    parser.add_argument(
        "--model",
        choices=("simulator", "stub"),
        default="simulator",
        help="the model service: the simulator (small answers) or the real-size stub",
    )
    parser.add_argument("--mariadb-url", default=DEFAULT_MARIADB, help="scratch database URL")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"weights (default {DEFAULT_MIX})")
    parser.add_argument("--think", type=float, default=0.0, help="pause between requests, s")
    parser.add_argument("--threads", type=int, default=16, help="waitress threads of the agent")
    parser.add_argument(
        "--model-concurrency", type=int, default=4, help="AOI_MODEL_MAX_CONCURRENCY"
    )
    parser.add_argument("--gate-wait", type=float, default=10.0, help="AOI_MODEL_GATE_WAIT, s")
    parser.add_argument("--batch-size", type=int, default=3, help="files per batch request")
    parser.add_argument("--image-size", type=int, default=128, help="test image side, pixels")
    parser.add_argument("--seed-images", type=int, default=20, help="uploads before the clock")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the clients")
    parser.add_argument("--agent-log-level", default="WARNING", help="AOI_LOG_LEVEL of the agent")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0:
        parser.error("--clients must be >= 1 and --duration > 0")
    args.weights = parse_mix(parser, args.mix)
    return args


def parse_mix(parser, text):
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in KINDS:
            parser.error(f"--mix: unknown kind {name!r}; kinds: {', '.join(KINDS)}")
        weights[name.strip()] = float(value)
    if sum(weights.values()) <= 0:
        parser.error("--mix: the weights must add up to more than 0")
    return weights


# ---- the clients -------------------------------------------------------------------------


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list)  # kind -> seconds
        self.status = defaultdict(Counter)  # kind -> status -> count
        self.codes = Counter()  # (kind, status, code) of errors
        self.overhead = []  # seconds per successful upload (single and batch files)
        self.model_time = []
        self.image_ids = []
        self.exceptions = Counter()

    def record(self, kind, status, seconds, code=None):
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[kind][status] += 1
            if status >= 400:
                self.codes[(kind, status, code)] += 1


class Client(threading.Thread):
    def __init__(self, index, base, args, images, results, deadline):
        super().__init__(name=f"client-{index}", daemon=True)
        self.base, self.args, self.images = base, args, images
        self.results, self.deadline = results, deadline
        self.rng = random.Random(args.seed * 1000 + index)
        self.session = requests.Session()
        self.kinds = list(args.weights)
        self.weights = [args.weights[kind] for kind in self.kinds]

    def run(self):
        while time.monotonic() < self.deadline:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            try:
                getattr(self, kind)()
            except requests.RequestException as exc:
                with self.results.lock:
                    self.results.exceptions[f"{kind}: {type(exc).__name__}"] += 1
            if self.args.think:
                time.sleep(self.args.think)
        self.session.close()

    def timed(self, kind, method, path, **kwargs):
        started = time.perf_counter()
        response = self.session.request(method, self.base + path, timeout=120, **kwargs)
        content = response.content  # read the whole body inside the measurement
        elapsed = time.perf_counter() - started
        code = None
        if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            code = response.json().get("code")
        self.results.record(kind, response.status_code, elapsed, code)
        return response, content, elapsed

    def image(self):
        return self.rng.choice(self.images)

    def part(self, stem):
        """(name, bytes, type) of one of the test images."""
        data = self.image()
        if data.startswith(b"\xff\xd8"):
            return f"{stem}.jpg", data, "image/jpeg"
        return f"{stem}.png", data, "image/png"

    def upload(self):
        files = {"image": self.part(f"load_{self.rng.randrange(10**6)}")}
        response, _, elapsed = self.timed("upload", "POST", "/upload", files=files)
        if response.status_code == 201:
            body = response.json()
            model = body["processing_time_seconds"]
            with self.results.lock:
                self.results.overhead.append(elapsed - model)
                self.results.model_time.append(model)
                self.results.image_ids.append(body["img_unique_id"])

    def batch(self):
        files = [("images", self.part(f"batch_{i}")) for i in range(self.args.batch_size)]
        response, _, _ = self.timed("batch", "POST", "/upload/batch", files=files)
        if response.status_code == 200:
            done = [r for r in response.json()["results"] if r.get("success")]
            with self.results.lock:
                self.results.image_ids.extend(r["img_unique_id"] for r in done)

    def history(self):
        params = {"limit": self.rng.choice((10, 20, 50)), "page": self.rng.choice((1, 1, 2))}
        if self.rng.random() < 0.4:
            params["class_name"] = self.rng.choice(CLASSES)
        if self.rng.random() < 0.3:
            params["start_date"] = time.strftime("%Y-%m-%d", time.gmtime())
        self.timed("history", "GET", "/images", params=params)

    def regions(self):
        params = {"limit": 50, "class_name": self.rng.choice(CLASSES)}
        if self.rng.random() < 0.5:
            params["min_area"] = self.rng.choice((5, 20, 50))
        if self.rng.random() < 0.3:
            params["sort"] = "area_desc"
        self.timed("regions", "GET", "/query/defects", params=params)

    def download(self):
        with self.results.lock:
            img_id = self.rng.choice(self.results.image_ids) if self.results.image_ids else None
        if img_id is None:
            return
        kind = self.rng.choice(("input", "overlay", "mask", "combined", "thumbnail", "json"))
        path = f"/download/json/{img_id}" if kind == "json" else f"/download/image/{img_id}/{kind}"
        self.timed("download", "GET", path)


# ---- reporting ---------------------------------------------------------------------------


def ms(value):
    return f"{value * 1000:8.1f}"


def report(args, results, wall, agent_cpu, sim_cpu, backend):
    total = sum(len(values) for values in results.latency.values())
    print()
    print(
        f"== load test: {args.clients} clients, {wall:.1f} s, backend {backend}, "
        f"model {args.model}, "
        f"think {args.think:g} s, waitress threads {args.threads}, "
        f"model slots {args.model_concurrency}, {os.cpu_count()} CPUs"
    )
    print(f"requests: {total} in {wall:.1f} s = {total / wall:.1f} requests/s")
    print(
        f"{'kind':<10}{'count':>8}{'req/s':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'max ms':>10}  statuses"
    )
    for kind in KINDS:
        values = results.latency.get(kind, [])
        if not values:
            continue
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(results.status[kind].items()))
        p50, p95, p99 = (ms(bc.percentile(values, q)) for q in (0.5, 0.95, 0.99))
        print(
            f"{kind:<10}{len(values):>8}{len(values) / wall:>8.1f}{p50:>10}{p95:>10}{p99:>10}"
            f"{ms(max(values)):>10}  {statuses}"
        )
    errors = Counter()
    for statuses in results.status.values():
        for status, count in statuses.items():
            if status >= 400:
                errors[status] += count
    print(f"errors by status: {dict(sorted(errors.items())) or 'none'}")
    for (kind, status, code), count in sorted(results.codes.items(), key=str):
        print(f"  {kind} {status} {code}: {count}")
    if results.exceptions:
        print(f"client-side exceptions: {dict(results.exceptions)}")
    unexpected = sum(
        count
        for (kind, status, code), count in results.codes.items()
        if status >= 500 and not (status == 503 and code == "MODEL_BUSY")
    )
    overhead = results.overhead
    p50, p95, p99 = (bc.percentile(overhead, q) for q in (0.5, 0.95, 0.99))
    print(
        f"agent overhead per single upload (total - model time), {len(overhead)} uploads: "
        f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
        f"(model time p50 {bc.percentile(results.model_time, 0.5) * 1000:.1f} ms)"
    )
    capacity = wall * os.cpu_count()
    print(f"CPU seconds: agent {agent_cpu:.1f}, simulator {sim_cpu:.1f} (of {capacity:.0f})")
    met = {
        "overhead p50": p50 * 1000 <= OVERHEAD_TARGETS_MS["p50"],
        "overhead p95": p95 * 1000 <= OVERHEAD_TARGETS_MS["p95"],
        "no unexpected 5xx": unexpected == 0 and not results.exceptions,
    }
    for name, ok in met.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    return all(met.values())


def start_stub(workdir):
    port = bc.free_port()
    argv = [sys.executable, "scripts/model_stub.py", "--port", str(port)]
    return bc.Service("model-stub", argv, port, log_dir=workdir).wait_ready("/health", 120)


# ---- main --------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="aoi-load-"))
    children = []

    def stop_children(*_):
        for child in reversed(children):
            child.stop()
        children.clear()

    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.database == "mariadb":
            database_url = args.mariadb_url
            bc.reset_mysql_database(database_url)
            bc.migrate(database_url)
        else:
            database_url = f"sqlite:///{workdir / 'load.sqlite3'}"
        if args.model == "stub":
            simulator = start_stub(workdir)
        else:
            simulator = bc.start_simulator(0, log_dir=workdir)
        children.append(simulator)
        env = {
            "AOI_DATABASE_URL": database_url,
            "AOI_STORAGE_ROOT": str(workdir / "storage"),
            "AOI_MODEL_SERVICE_URL": simulator.url,
            "AOI_MODEL_MAX_CONCURRENCY": str(args.model_concurrency),
            "AOI_MODEL_GATE_WAIT": str(args.gate_wait),
            "AOI_DB_POOL_SIZE": str(args.threads + 8),
            "AOI_API_KEYS": "",
            "AOI_LOG_LEVEL": args.agent_log_level,
            "AOI_FSYNC": "true",
        }
        agent = bc.start_agent(env, threads=args.threads, log_dir=workdir)
        children.append(agent)

        rng = np.random.default_rng(args.seed)
        if args.model == "stub":
            images = [model_stub.sample_input()]
        else:
            images = [bc.wafer_image(rng, args.image_size) for _ in range(32)]
        results = Results()
        seeder = Client(0, agent.url, args, images, results, time.monotonic() + 120)
        for _ in range(args.seed_images):
            seeder.upload()
        results = Results()  # the seed uploads are not measured
        results.image_ids = list(seeder.results.image_ids)
        agent_cpu, sim_cpu = agent.cpu_seconds(), simulator.cpu_seconds()

        print(
            f"running {args.clients} clients for {args.duration:g} s against {agent.url} "
            f"({args.database}) …",
            flush=True,
        )
        started = time.monotonic()
        deadline = started + args.duration
        clients = [
            Client(i + 1, agent.url, args, images, results, deadline) for i in range(args.clients)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(max(1.0, deadline + 150 - time.monotonic()))
        wall = time.monotonic() - started
        stragglers = sum(client.is_alive() for client in clients)
        if stragglers:
            print(f"warning: {stragglers} client(s) still waiting for an answer; not counted")
        ok = report(
            args,
            results,
            wall,
            agent.cpu_seconds() - agent_cpu,
            simulator.cpu_seconds() - sim_cpu,
            args.database,
        )
        health = requests.get(f"{agent.url}/health", timeout=10).json()
        print(f"agent /health after the run: {health['status']}")
        return 0 if ok else 1
    finally:
        stop_children()
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
