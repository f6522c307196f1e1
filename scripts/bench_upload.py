"""Agent overhead of one upload with real-size model answers, next to its floor.

    python scripts/bench_upload.py                     # temp SQLite database
    python scripts/bench_upload.py --database-url \\
        "mysql+pymysql://root@127.0.0.1:3306/aoi_bench?charset=utf8mb4"   # scratch MariaDB DB

Starts the real-size model stub (scripts/model_stub.py: the recorded sample, a
12.9 MB answer, sent at once) and the agent (`python run.py`, waitress,
AOI_FSYNC=true) as subprocesses on loopback ports, then:

1. sequential uploads of the 1792x1792 sample input: the agent's overhead per upload
   (client time minus the model time the answer states, which is ~0 for the stub),
   p50/p95, and the agent's CPU per upload;
2. the floor, timed in this process on the same answer bytes after each upload (so
   both see the same machine), with the agent's own functions, one after the other:
   JSON parse (parse_json), strict base64 decode (decode_base64), PNG structure
   check (png_size: chunk CRCs and inflated size), the write of the same bytes (6
   files, each fsync'ed, and their folder) and the input's thumbnail; the overhead /
   floor ratio, and the agent's CPU per upload next to the floor's CPU;
3. the agent's CPU per image of a batch (POST /upload/batch of the sample input;
   the median of --batches batches);
4. the agent's peak RSS growth during one upload against the answer's size
   (VmRSS sampled every 2 ms; the first upload of a fresh agent, and the largest of
   the following ones).

Targets: overhead p50 <= 60 ms, p95 <= 100 ms, ratio <= 1.5x, CPU per batch image
<= 80 ms, RSS growth <= 3x the answer. The 50-client load run with the same answers
is `python scripts/load_test.py --model stub`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402
import model_stub  # noqa: E402

from aoi_flask.services.imaging import png_size  # noqa: E402
from aoi_flask.services.segformer import RESULT_IMAGES, decode_base64, parse_json  # noqa: E402

TARGETS = {"p50": 60.0, "p95": 100.0, "ratio": 1.5, "batch_cpu": 80.0, "rss_ratio": 3.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=None,
        help="a scratch MariaDB database on 127.0.0.1 (reset first); default: temp SQLite",
    )
    parser.add_argument("--uploads", type=int, default=40, help="sequential uploads measured")
    parser.add_argument("--warm-up", type=int, default=3, help="uploads before the clock")
    parser.add_argument("--batch", type=int, default=12, help="files in the CPU-per-image batch")
    parser.add_argument("--batches", type=int, default=3, help="batches measured (median)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of the agent")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and logs")
    return parser.parse_args(argv)


# ---- the floor ---------------------------------------------------------------------------


def timed(work):
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def write_synced(folder, files):
    """The same bytes written as the agent must: each file synced, then its folder."""
    for name, data in files.items():
        with open(folder / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def thumbnail(data, size=256):
    with Image.open(io.BytesIO(data)) as image:
        image.draft(None, (size, size))  # JPEG: decode at a reduced DCT scale
        image.load()
        small = ImageOps.contain(image, (size, size))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def floor_once(answer_bytes, input_bytes, folder):
    """One pass over the work an upload cannot skip; seconds per step, and the CPU
    seconds of the whole pass (`cpu`: robust on a shared machine)."""
    cpu_started = time.process_time()
    steps = {}
    steps["json parse"], body = timed(lambda: parse_json(answer_bytes))
    steps["base64 decode"], pngs = timed(
        lambda: [decode_base64(body[key], key) for key in RESULT_IMAGES.values()]
    )
    steps["PNG check (CRCs, inflate)"], _ = timed(lambda: [png_size(png) for png in pngs])
    steps["thumbnail"], thumb = timed(lambda: thumbnail(input_bytes))
    analysis = json.dumps(body["analysis_results"], indent=2).encode()
    files = {"input.jpg": input_bytes, "analysis.json": analysis, "thumbnail.jpg": thumb}
    files.update(zip(("combined.png", "mask.png", "overlay.png"), pngs, strict=True))
    steps["write 6 files (fsync)"], _ = timed(lambda: write_synced(folder, files))
    steps["cpu"] = time.process_time() - cpu_started
    return steps


def summarise_floor(passes):
    totals = [sum(v for k, v in steps.items() if k != "cpu") for steps in passes]
    per_step = {name: bc.percentile([p[name] for p in passes], 0.5) for name in passes[0]}
    return bc.percentile(totals, 0.5), per_step


# ---- the agent ---------------------------------------------------------------------------


def upload(session, base, data, name="segformer_input.jpeg"):
    started = time.perf_counter()
    response = session.post(
        f"{base}/upload", files={"image": (name, data, "image/jpeg")}, timeout=120
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"upload answered {response.status_code}: {response.text[:400]}")
    return elapsed - response.json()["processing_time_seconds"]


def measure_uploads(session, agent, data, count, floor):
    """Uploads, each followed by one pass of the floor (`floor()`), so both see the
    same machine (it is shared)."""
    overheads, cpu, passes = [], 0.0, []
    for _ in range(count):
        cpu_before = agent.cpu_seconds()
        overheads.append(upload(session, agent.url, data))
        cpu += agent.cpu_seconds() - cpu_before
        passes.append(floor())
    return overheads, cpu / count, passes


def measure_rss(session, agent, data, count):
    growth = []
    for _ in range(count):
        with bc.RssSampler(agent.pid, interval=0.002) as sampler:
            upload(session, agent.url, data)
        growth.append(sampler.growth_mb)
    return growth


def measure_batch(session, agent, data, count):
    files = [("images", (f"wafer_{i:03d}.jpeg", data, "image/jpeg")) for i in range(count)]
    cpu_before = agent.cpu_seconds()
    started = time.perf_counter()
    response = session.post(f"{agent.url}/upload/batch", files=files, timeout=600)
    wall = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or body.get("processed") != count:
        raise SystemExit(f"batch answered {response.status_code}: {response.text[:400]}")
    return (agent.cpu_seconds() - cpu_before) / count, wall


# ---- main --------------------------------------------------------------------------------


def report_line(name, value, target, unit="ms", fmt="{:.1f}"):
    ok = value <= target
    print(f"  {name:<44} {fmt.format(value):>8} {unit:<3} target <= {target:g}  {bc.verdict(ok)}")
    return ok


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aoi-bench-upload-"))
    children = []
    try:
        url = bc.prepare_database(args.database_url, work)
        port = bc.free_port()
        argv_stub = [sys.executable, "scripts/model_stub.py", "--port", str(port)]
        stub = bc.Service("model-stub", argv_stub, port, log_dir=work)
        children.append(stub)
        stub.wait_ready("/health", timeout=120)
        env = bc.agent_env(url, work / "storage", stub.url, AOI_FSYNC="true")
        agent = bc.start_agent(env, threads=args.threads, log_dir=work)
        children.append(agent)

        data = model_stub.sample_input()
        before, after = model_stub.answer_parts()
        answer_bytes = before + b'"segformer_input.jpeg"' + after
        answer_mb = len(answer_bytes) / 1e6
        session = requests.Session()
        print(bc.machine_line(url))
        print(
            f"answer: {answer_mb:.1f} MB of JSON (three 1792x1792-based PNGs); input "
            f"{len(data) / 1e3:.0f} kB JPEG; fsync on; waitress threads {args.threads}"
        )

        first_rss = measure_rss(session, agent, data, 1)[0]
        for _ in range(args.warm_up):
            upload(session, agent.url, data)
        folder = work / "floor"
        folder.mkdir()
        overheads, cpu_upload, passes = measure_uploads(
            session, agent, data, args.uploads, lambda: floor_once(answer_bytes, data, folder)
        )
        floor, steps = summarise_floor(passes)
        floor_cpu = steps.pop("cpu")
        later_rss = max(measure_rss(session, agent, data, 5))
        batches = [measure_batch(session, agent, data, args.batch) for _ in range(args.batches)]
        cpu_batch = bc.percentile([cpu for cpu, _ in batches], 0.5)
        batch_wall = bc.percentile([wall for _, wall in batches], 0.5)

        p50, p95 = (bc.percentile(overheads, q) * 1000 for q in (0.5, 0.95))
        print("\nfloor (this process, same answer, one pass after each upload; p50):")
        for name, seconds in steps.items():
            print(f"  {name:<30} {seconds * 1000:7.1f} ms")
        print(f"  {'total':<30} {floor * 1000:7.1f} ms")
        print(f"\nagent, {args.uploads} sequential uploads:")
        print(f"  overhead p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(overheads) * 1000:.1f} ms")
        print(
            f"  agent CPU per upload {cpu_upload * 1000:.1f} ms; floor CPU "
            f"{floor_cpu * 1000:.1f} ms (ratio {cpu_upload / floor_cpu:.2f}x)"
        )
        print(
            f"  batch of {args.batch} (median of {args.batches}): {batch_wall:.2f} s, agent CPU "
            f"per image {cpu_batch * 1000:.1f} ms ({1 / cpu_batch:.1f} answers/s per process); "
            f"each: {', '.join(f'{cpu * 1000:.0f}' for cpu, _ in batches)} ms"
        )
        print(
            f"  peak RSS growth of one upload: first {first_rss:.1f} MB, later max "
            f"{later_rss:.1f} MB (answer {answer_mb:.1f} MB)"
        )
        print("\ntargets:")
        results = [
            report_line("overhead p50", p50, TARGETS["p50"]),
            report_line("overhead p95", p95, TARGETS["p95"]),
            report_line(
                "overhead p50 / floor", p50 / (floor * 1000), TARGETS["ratio"], "x", "{:.2f}"
            ),
            report_line("agent CPU per batch image", cpu_batch * 1000, TARGETS["batch_cpu"]),
            report_line(
                "peak RSS growth / answer size (first upload)",
                max(first_rss, later_rss) * 1.048576 / answer_mb,
                TARGETS["rss_ratio"],
                "x",
                "{:.2f}",
            ),
        ]
        return 0 if all(results) else 1
    finally:
        for child in reversed(children):
            child.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
