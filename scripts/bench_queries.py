"""History, region-search and statistics latency on a seeded database.

    python scripts/seed_history.py --reset            # once: 100,000 images in aoi_bench
    python scripts/bench_queries.py                   # p50/p95 over 50 requests each
    python scripts/bench_queries.py --explain         # also EXPLAIN every SQL statement

Serves the seeded database with waitress (`python run.py` in a subprocess on a
free loopback port; no model service is needed for queries) and times each
request from the client side (HTTP, SQL and JSON together), after a few warm-up
requests. Targets: /images p95 <= 50 ms, /query/defects p95 <= 100 ms,
/stats p95 <= 250 ms.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1/aoi_bench?charset=utf8mb4"
TARGET_MS = {"history": 50, "region search": 100, "statistics": 250}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a seeded database")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per case first")
    parser.add_argument(
        "--explain", action="store_true", help="print the EXPLAIN plan of every SQL statement"
    )
    return parser.parse_args(argv)


def cases(session, base):
    """The benchmark's requests; dates and a batch id are read from the data."""
    stats = session.get(f"{base}/stats", timeout=60).json()
    last = date.fromisoformat(stats["date_range"]["last"][:10])
    week = {"start_date": str(last - timedelta(days=6)), "end_date": str(last)}
    month = {"start_date": str(last - timedelta(days=29)), "end_date": str(last)}
    batches = session.get(f"{base}/batches", params={"limit": 1}, timeout=60).json()["batches"]
    batch = {"batch_id": batches[0]["batch_id"]} if batches else {}
    newest = session.get(f"{base}/images", params={"limit": 1}, timeout=60).json()["images"]
    lot = {"lot_id": newest[0].get("lot_id")} if newest and newest[0].get("lot_id") else {}
    tool = {"tool_id": "AOI-3"}  # scripts/seed_history.py: one image in eight
    return [
        ("history", "/images", {"limit": 20}),
        ("history", "/images", {"limit": 20, **week}),
        ("history", "/images", {"limit": 20, "class_name": "Copper_Nodule"}),
        ("history", "/images", {"limit": 20, "class_name": "PI_Particle"}),
        ("history", "/images", {"limit": 20, "class_name": "PR_Peeling", **month}),
        ("region search", "/query/defects", {"class_name": "Copper_Nodule", **area(100, 1000)}),
        ("region search", "/query/defects", {"class_name": "PI_Particle", **area(50, 500)}),
        (
            "region search",
            "/query/defects",
            {**month, "min_circularity": 0.5, "max_circularity": 0.8},
        ),
        ("region search", "/query/defects", batch),
        ("statistics", "/stats", {}),
        ("statistics", "/stats", month),
        # Traceability filters (issue #16).
        ("history", "/images", {"limit": 20, **lot}),
        ("history", "/images", {"limit": 20, **tool}),
        ("history", "/images", {"limit": 20, **tool, "reviewed": "false", **month}),
        ("region search", "/query/defects", lot),
        ("region search", "/query/defects", {**tool, "class_name": "PI_Particle"}),
        ("region search", "/query/defects", {**tool, "disposition": "false_call"}),
        ("statistics", "/stats", lot),
        ("statistics", "/stats", {**tool, **month}),
        ("statistics", "/stats", {"group_by": "tool_id", **month}),
    ]


def area(low, high):
    return {"min_area": low, "max_area": high}


def describe(params):
    return "&".join(f"{key}={value}" for key, value in params.items()) or "(none)"


def time_case(session, url, params, warmup, count):
    for _ in range(warmup):
        check(session.get(url, params=params, timeout=120))
    samples = []
    body = None
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, params=params, timeout=120)
        samples.append((time.perf_counter() - started) * 1000)
        body = check(response)
    return samples, body


def check(response):
    if response.status_code != 200:
        raise SystemExit(f"{response.url} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def result_size(body):
    if "total" in body:
        return f"total {body['total']}"
    return f"{body['totals']['images']} images"


def main(argv=None):
    args = parse_args(argv)
    url = args.database_url
    bc.check_loopback(url)
    print(bc.machine_line(url))
    if bc.is_mysql(url):
        print(mysql_setup(url))
    work = Path(tempfile.mkdtemp(prefix="aoi-bench-queries-"))
    # Nothing listens on the model port: queries never call the model service.
    env = bc.agent_env(url, work / "storage", f"http://127.0.0.1:{bc.free_port()}")
    agent = bc.start_agent(env, log_dir=work)
    rows = []
    try:
        session = requests.Session()
        base = agent.url
        for group, path, params in cases(session, base):
            samples, body = time_case(session, base + path, params, args.warmup, args.requests)
            rows.append((group, path, params, samples, body))
    finally:
        agent.stop()
    print(f"\n{args.requests} sequential requests per case after {args.warmup} warm-up requests")
    print(f"{'endpoint':<16}{'parameters':<74}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}  target")
    missed = 0
    for group, path, params, samples, body in rows:
        p50, p95 = bc.percentile(samples, 0.50), bc.percentile(samples, 0.95)
        target = TARGET_MS[group]
        ok = p95 <= target
        missed += not ok
        print(
            f"{path:<16}{describe(params)[:72]:<74}{p50:8.1f}{p95:8.1f}{max(samples):8.1f}"
            f"  p95 <= {target} ms {bc.verdict(ok)} ({result_size(body)})"
        )
    print(bc.machine_line())
    if args.explain:
        explain_all([(path, params) for _, path, params, _, _ in rows], url)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if missed else 0


def mysql_setup(url):
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            pool = conn.execute(text("SELECT @@innodb_buffer_pool_size")).scalar()
            sizes = conn.execute(
                text(
                    "SELECT table_name, table_rows, data_length + index_length "
                    "FROM information_schema.tables WHERE table_schema = DATABASE() "
                    "AND table_name IN ('images', 'classes', 'regions')"
                )
            ).all()
            images = conn.execute(text("SELECT COUNT(*) FROM images")).scalar()
    finally:
        engine.dispose()
    total_mb = sum(size for _, _, size in sizes) / 2**20
    return (
        f"database: {images} images; images+classes+regions {total_mb:.0f} MB "
        f"(data and indexes); innodb_buffer_pool_size {pool / 2**20:.0f} MB"
    )


# ---- EXPLAIN ------------------------------------------------------------------------------


def explain_all(requests_, url):
    """Run each request in-process, capture its SQL and print MariaDB's plan."""
    from sqlalchemy import event

    from aoi_flask.extensions import db

    if not bc.is_mysql(url):
        print("EXPLAIN output is for MariaDB/MySQL only")
        return
    storage = tempfile.mkdtemp(prefix="aoi-bench-explain-")
    app = bc.make_app(url, storage)
    client = app.test_client()
    print("\nEXPLAIN (table: access type, key, estimated rows, extra)")
    with app.app_context():
        engine = db.engine
        for path, params in requests_:
            statements = []

            def capture(conn, cursor, statement, parameters, *args, found=statements):
                found.append((statement, parameters))

            event.listen(engine, "before_cursor_execute", capture)
            try:
                client.get(path, query_string=params)
            finally:
                event.remove(engine, "before_cursor_execute", capture)
            print(f"\n{path}?{describe(params)}")
            for statement, parameters in statements:
                if statement.lstrip().upper().startswith("SELECT"):
                    print_plan(engine, statement, parameters)
    app.extensions["aoi"].batches.shutdown()
    shutil.rmtree(storage, ignore_errors=True)


def print_plan(engine, statement, parameters):
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN " + statement, parameters)
        names = [column[0] for column in cursor.description]
        plan = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        raw.close()
    print("  " + " ".join(statement.split())[:160])
    for step in plan:
        print(
            f"    {step['table']!s:<12} {step['type']!s:<15} key={step['key']!s:<26} "
            f"rows={step['rows']!s:<8} {step['Extra'] or ''}"
        )


if __name__ == "__main__":
    sys.exit(main())
