"""Streaming of a 200-image batch ZIP: time to first byte, total time, agent memory.

    python scripts/bench_zip.py                         # temp SQLite database
    python scripts/bench_zip.py --database-url \\
        "mysql+pymysql://root@127.0.0.1/aoi_bench_zip?charset=utf8mb4"   # scratch MariaDB DB

Starts the simulator (latency 0) and the agent (`python run.py`, waitress) on free
loopback ports, stores 200 generated images as one batch through the API, then
downloads `GET /download/batch/{id}` and measures the time to the first byte
(target <= 0.5 s), the total time and size, and the agent's peak RSS growth
during the download (VmRSS sampled every 50 ms; target <= 100 MB). The archive
must validate with `zipfile`: one folder per image, batch_summary.json and
regions.csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_batch  # noqa: E402
import bench_common as bc  # noqa: E402

CHUNK = 256 * 1024


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=None,
        help="a scratch MariaDB database on 127.0.0.1 (reset first); default: temp SQLite",
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument(
        "--size",
        type=int,
        default=512,
        help="image side in pixels (512: a ZIP of a few hundred MB, more than the memory "
        "target, so buffering it would show)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="downloads to time (median shown)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and logs")
    return parser.parse_args(argv)


def create_batch(session, base, files):
    result = bench_batch.run_batch(session, base, files, poll=0.5)
    state = result["state"]
    if state["status"] != "done":
        raise SystemExit(f"batch ended {state['status']}: {state['failed']} failed")
    return result["batch_id"], state


def download(session, url, target):
    """Stream the ZIP to a file; returns (seconds to first byte, total seconds, bytes)."""
    started = time.perf_counter()
    first_byte = None
    size = 0
    with session.get(url, stream=True, timeout=600) as response:
        if response.status_code != 200:
            raise SystemExit(f"download answered {response.status_code}: {response.text[:300]}")
        declared = int(response.headers.get("Content-Length", -1))
        with open(target, "wb") as handle:
            for chunk in response.iter_content(CHUNK):
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                handle.write(chunk)
                size += len(chunk)
    return first_byte, time.perf_counter() - started, size, declared


def validate(path, state):
    """Every image in its own folder, plus batch_summary.json and regions.csv."""
    problems = []
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad:
            problems.append(f"CRC error in {bad}")
        names = archive.namelist()
        folders = {name.split("/", 1)[0] for name in names if "/" in name}
        done = [f for f in state["files"] if f["state"] == "done"]
        if len(folders) != len(done):
            problems.append(f"{len(folders)} folders for {len(done)} stored images")
        for folder in folders:
            inside = {n.split("/", 1)[1] for n in names if n.startswith(folder + "/")}
            expected = {"analysis.json", "combined.png", "mask.png", "overlay.png"}
            if not expected <= inside or not any(n.startswith("input.") for n in inside):
                problems.append(f"{folder} holds {sorted(inside)}")
        summary = json.loads(archive.read("batch_summary.json"))
        if summary.get("batch_id") != state["batch_id"]:
            problems.append("batch_summary.json names another batch")
        rows = list(csv.DictReader(io.StringIO(archive.read("regions.csv").decode("utf-8"))))
        regions = sum(f.get("total_defects") or 0 for f in done)
        if len(rows) != regions:
            problems.append(f"regions.csv holds {len(rows)} rows, the batch {regions} regions")
    return folders, len(rows), problems


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aoi-bench-zip-"))
    services = []
    try:
        url = bc.prepare_database(args.database_url, work)
        print(bc.machine_line(url))
        simulator = bc.start_simulator(0.0, log_dir=work)
        services.append(simulator)
        env = bc.agent_env(url, work / "storage", simulator.url)
        agent = bc.start_agent(env, log_dir=work)
        services.append(agent)
        session = requests.Session()
        files = bc.wafer_images(args.images, size=args.size, seed=11)
        started = time.perf_counter()
        batch_id, state = create_batch(session, agent.url, files)
        print(
            f"stored {state['processed']} images of {args.size}x{args.size} as batch {batch_id} "
            f"in {time.perf_counter() - started:.1f} s (simulator latency 0)"
        )
        target = work / "batch.zip"
        runs = []
        for _ in range(args.repeat):
            target.unlink(missing_ok=True)
            with bc.RssSampler(agent.pid, interval=0.05) as rss:
                ttfb, total, size, declared = download(session, state["download_url"], target)
            runs.append((ttfb, total, rss))
            print(
                f"  download: first byte {ttfb:.3f} s, total {total:.2f} s, "
                f"RSS growth {rss.growth_mb:.1f} MB ({rss.samples} samples)"
            )
        folders, csv_rows, problems = validate(target, state)
        ttfb = statistics.median(run[0] for run in runs)
        total = statistics.median(run[1] for run in runs)
        worst = max((run[2] for run in runs), key=lambda rss: rss.growth_mb)
        growth = worst.growth_mb
        print(
            f"ZIP: {size / 2**20:.1f} MB (Content-Length {declared}), {len(folders)} folders, "
            f"batch_summary.json, regions.csv with {csv_rows} rows; zipfile: "
            f"{'valid' if not problems else '; '.join(problems[:5])}"
        )
        print(
            f"time to first byte: {ttfb:6.3f} s median of {len(runs)} "
            f"(target <= 0.5: {bc.verdict(ttfb <= 0.5)})"
        )
        print(f"total time:         {total:6.2f} s median ({size / 2**20 / total:.0f} MB/s)")
        print(
            f"agent RSS: before {worst.baseline_kb / 1024:.1f} MB, "
            f"peak {worst.peak_kb / 1024:.1f} MB (the download with the largest growth)"
        )
        print(f"peak RSS growth:    {growth:6.1f} MB (target <= 100: {bc.verdict(growth <= 100)})")
        print(bc.machine_line())
        ok = not problems and size == declared and ttfb <= 0.5 and growth <= 100
        return 0 if ok else 1
    finally:
        for service in reversed(services):
            service.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
