"""Throughput and memory of one large asynchronous batch against the simulator.

    python scripts/bench_batch.py                       # temp SQLite database
    python scripts/bench_batch.py --database-url \\
        "mysql+pymysql://root@127.0.0.1/aoi_bench_batch?charset=utf8mb4"   # scratch MariaDB DB

Starts the model-service simulator (`--latency 0.5`) and the agent (`python run.py`,
waitress, AOI_MODEL_MAX_CONCURRENCY=4, a temp storage root) as subprocesses on free
loopback ports, sends 500 small generated greyscale PNG/JPEG wafer images (a few
dark spots each, so the simulator finds regions) as one
`POST /upload/batch?async=true`, and polls `GET /batches/{id}` until it is
finished. Prints the wall time from the 202 to done against the ideal
images x latency / concurrency (target <= 1.10x) and the agent's peak RSS growth
(VmRSS sampled every 50 ms; target <= 150 MB).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

FINISHED = ("done", "partial", "failed")
MODEL_CALL = re.compile(r"model call .*?: 200 in ([\d.]+)s \(model ([\d.]+)s\)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=None,
        help="a scratch MariaDB database on 127.0.0.1 (reset first); default: temp SQLite",
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.5, help="simulator seconds per image")
    parser.add_argument("--concurrency", type=int, default=4, help="AOI_MODEL_MAX_CONCURRENCY")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument(
        "--poll",
        type=float,
        default=0.1,
        help="shortest time between status polls; early on they are spaced out (up to 2 s) "
        "by the work left, since each poll of a 500-file batch costs the agent CPU",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and logs")
    return parser.parse_args(argv)


def warm_up(session, base, name, data):
    """One single upload first, so lazy start-up work is not counted as batch growth."""
    response = session.post(f"{base}/upload", files={"image": (name, data)}, timeout=60)
    if response.status_code != 201:
        raise SystemExit(f"warm-up upload answered {response.status_code}: {response.text[:300]}")


def run_batch(session, base, files, poll, per_file=0.0):
    """POST the batch (async) and poll until it is finished. `per_file`: expected
    seconds per file, to space the polls while much work is left."""
    started = time.perf_counter()
    response = session.post(
        f"{base}/upload/batch",
        params={"async": "true"},
        files=bc.multipart_files(files),
        timeout=600,
    )
    accepted_at = time.perf_counter()
    if response.status_code != 202:
        raise SystemExit(f"batch answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    status_url = f"{base}/batches/{body['batch_id']}"
    polls = 0
    while True:
        state = session.get(status_url, timeout=60).json()
        polls += 1
        if state["status"] in FINISHED:
            done_at = time.perf_counter()
            break
        left = state["queued"] + state["processing"]
        time.sleep(min(2.0, max(poll, left * per_file / 10)))
    return {
        "batch_id": body["batch_id"],
        "upload_s": accepted_at - started,
        "wall_s": done_at - accepted_at,
        "state": state,
        "polls": polls,
    }


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aoi-bench-batch-"))
    services = []
    try:
        url = bc.prepare_database(args.database_url, work)
        print(bc.machine_line(url))
        files = bc.wafer_images(args.images + 1, size=args.size)
        warm, files = files[0], files[1:]
        body_mb = sum(len(data) for _, data in files) / 2**20
        print(
            f"{args.images} images {args.size}x{args.size} (PNG/JPEG), {body_mb:.1f} MB of "
            f"image data; simulator latency {args.latency} s; model concurrency "
            f"{args.concurrency}; database {url.split('?')[0]}"
        )
        simulator = bc.start_simulator(args.latency, log_dir=work)
        services.append(simulator)
        env = bc.agent_env(
            url,
            work / "storage",
            simulator.url,
            AOI_MODEL_MAX_CONCURRENCY=args.concurrency,
            AOI_LOG_LEVEL="INFO",  # one line per model call: its time in the agent and model
        )
        agent = bc.start_agent(env, log_dir=work)
        services.append(agent)
        session = requests.Session()
        warm_up(session, agent.url, *warm)
        with bc.RssSampler(agent.pid, interval=0.05) as rss:
            per_file = args.latency / args.concurrency
            result = run_batch(session, agent.url, files, args.poll, per_file)
        hwm_mb = bc.proc_status_kb(agent.pid, "VmHWM") / 1024
        report(args, result, rss, hwm_mb)
        report_model_calls(agent.log(tail=10**8))
        print(bc.machine_line())
        return 0 if result["ok"] else 1
    finally:
        for service in reversed(services):
            service.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(args, result, rss, hwm_mb):
    state = result["state"]
    ideal = args.images * args.latency / args.concurrency
    ratio = result["wall_s"] / ideal
    growth = rss.growth_mb
    regions = sum(f.get("total_defects") or 0 for f in state["files"])
    print(
        f"batch {result['batch_id']}: status {state['status']}, {state['processed']} processed, "
        f"{state['failed']} failed, {regions} regions found"
    )
    print(f"upload (POST until 202):   {result['upload_s']:7.2f} s")
    print(
        f"202 -> done (wall):        {result['wall_s']:7.2f} s  ({result['polls']} polls of "
        f"GET /batches/{{id}}; server-side elapsed {state['elapsed_seconds']:.0f} s)"
    )
    print(
        f"ideal {args.images} x {args.latency} / {args.concurrency}: {ideal:10.2f} s  "
        f"ratio {ratio:.3f} (target <= 1.10: {bc.verdict(ratio <= 1.10)})"
    )
    print(
        f"agent RSS: before {rss.baseline_kb / 1024:.1f} MB, peak {rss.peak_kb / 1024:.1f} MB "
        f"({rss.samples} samples every 50 ms), VmHWM {hwm_mb:.1f} MB"
    )
    print(
        f"peak RSS growth:           {growth:7.1f} MB (target <= 150: {bc.verdict(growth <= 150)})"
    )
    result["ok"] = (
        state["status"] == "done" and state["failed"] == 0 and ratio <= 1.10 and growth <= 150
    )


def report_model_calls(log_text):
    """Where a model slot's time goes: the whole call in the agent vs. the simulator's
    own processing_time (padded to the latency)."""
    calls = [(float(a), float(m)) for a, m in MODEL_CALL.findall(log_text)]
    if not calls:
        return
    agent = statistics.mean(a for a, _ in calls)
    model = statistics.mean(m for _, m in calls)
    print(
        f"model calls: {len(calls)}, mean {agent * 1000:.0f} ms in the agent "
        f"(request, answer, validation) vs {model * 1000:.0f} ms inside the simulator: "
        f"{(agent - model) * 1000:.0f} ms overhead per call"
    )


if __name__ == "__main__":
    sys.exit(main())
