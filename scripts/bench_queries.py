"""History, region-search and statistics latency on a seeded database (issue #12).

    python scripts/bench_queries.py --seed 100000   # reset aoi_bench, seed 100k images, measure
    python scripts/bench_queries.py --seed 1000000  # the same at 1M images / ~10M regions
    python scripts/bench_queries.py                 # measure an already seeded database
    python scripts/bench_queries.py --database-url sqlite:////tmp/aoi_bench.sqlite3 --seed 100000

Seeds with scripts/seed_history.py (on MariaDB LOAD DATA LOCAL INFILE straight into the
tables, `flask aoi reindex`'s rebuild, then the secondary indexes in one sorted pass).
Serves the database with waitress (`python run.py` in a subprocess on a free loopback
port; no model service is needed for queries) and times each request from the client
side (HTTP, SQL and JSON together), after a few warm-up requests; deep pages both by
`page` and by `cursor`. Prints p50/p95 per request, the row counts, MariaDB's
innodb_buffer_pool_size, a streamed CSV export of about 100k regions (time to the
first byte, agent RSS growth) and the EXPLAIN plan of every SQL statement. Targets:
p95 <= 100 ms (MariaDB, up to 200k images), 250 ms (MariaDB, more), 200 ms (SQLite).
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
CSV_REGIONS = 100_000  # the CSV export case streams about this many matching regions
DEEP_PAGE = 50


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a seeded database")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="IMAGES",
        help="first reset the database and seed this many images (scripts/seed_history.py)",
    )
    parser.add_argument("--requests", type=int, default=50, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per case first")
    parser.add_argument(
        "--target-ms",
        type=float,
        default=0,
        help="p95 target per request (default: MariaDB 100 ms up to 200k images, "
        "250 ms above; SQLite 200 ms)",
    )
    parser.add_argument(
        "--no-explain", action="store_true", help="skip the EXPLAIN plans (MariaDB)"
    )
    return parser.parse_args(argv)


def cases(session, base):
    """The benchmark's requests; dates, a batch id and cursors are read from the data."""
    stats = session.get(f"{base}/stats", timeout=120).json()
    last = date.fromisoformat(stats["date_range"]["last"][:10])
    month = {"start_date": str(last - timedelta(days=29)), "end_date": str(last)}
    batches = session.get(f"{base}/batches", params={"limit": 1}, timeout=60).json()["batches"]
    batch = {"batch_id": batches[0]["batch_id"]} if batches else {}
    newest = session.get(f"{base}/query/defects", params={"limit": 1}, timeout=60).json()
    latest = session.get(f"{base}/images", params={"limit": 1}, timeout=60).json()["images"]
    lot = {"lot_id": latest[0]["lot_id"]} if latest and latest[0].get("lot_id") else {}
    tool = {"tool_id": "AOI-3"}  # scripts/seed_history.py: one image in eight
    image = {"img_unique_id": newest["regions"][0]["img_unique_id"], "sort": "area_desc"}
    shapes = {
        "class + range + circularity/aspect": {
            "class_name": "PI_Particle",
            "min_area": 20,
            "max_area": 400,
            "min_circularity": 0.5,
            "max_circularity": 0.9,
            "max_aspect_ratio": 2.0,
        },
    }
    found = [
        ("/images", {"limit": 20}),
        ("/images", {"limit": 20, "page": DEEP_PAGE}),
        ("/images", {"limit": 20, **month}),
        ("/images", {"limit": 20, "class_name": "PR_Peeling"}),
        ("/images", {"limit": 20, "class_name": "Copper_Nodule", **month}),
        ("/images", {"limit": 20, **batch}),
        ("/query/defects", {"class_name": "PI_Particle", "min_area": 10}),
        ("/query/defects", {"class_name": "PI_Particle", "min_area": 10, "page": DEEP_PAGE}),
        ("/query/defects", shapes["class + range + circularity/aspect"]),
        ("/query/defects", {"class_name": "PR_Peeling", **month}),
        ("/query/defects", {**month, "min_circularity": 0.5, "max_circularity": 0.8}),
        ("/query/defects", batch),
        ("/query/defects", image),
        ("/query/defects", {"sort": "area_desc"}),
        ("/query/defects", {"sort": "area_desc", "page": DEEP_PAGE}),
        ("/query/defects", {"class_name": "Env_Particle", "sort": "circularity_asc"}),
        ("/stats", {}),
        ("/stats", month),
        # Traceability filters (issue #16).
        ("/images", {"limit": 20, **lot}),
        ("/images", {"limit": 20, **tool}),
        ("/images", {"limit": 20, **tool, "reviewed": "false", **month}),
        ("/query/defects", lot),
        ("/query/defects", {**tool, "class_name": "PI_Particle"}),
        ("/query/defects", {**tool, "disposition": "false_call"}),
        ("/stats", lot),
        ("/stats", {**tool, **month}),
        ("/stats", {"group_by": "tool_id", **month}),
    ]
    # The deep page again, reached by cursor: follow next_cursor DEEP_PAGE - 1 times.
    for path, params in (
        ("/query/defects", {"class_name": "PI_Particle", "min_area": 10}),
        ("/query/defects", {"sort": "area_desc"}),
        ("/images", {"limit": 20}),
    ):
        cursor = None
        for _ in range(DEEP_PAGE - 1):
            body = session.get(base + path, params={**params, **cursor_of(cursor)}, timeout=60)
            cursor = body.json()["next_cursor"]
        index = next(i for i, case in enumerate(found) if case == (path, params)) + 2
        found.insert(index, (path, {**params, "cursor": cursor}))
    return found, csv_window(stats)


def cursor_of(cursor):
    return {"cursor": cursor} if cursor else {}


def csv_window(stats):
    """The last days that hold about CSV_REGIONS regions (from the daily series)."""
    total, start = 0, None
    for day in reversed(stats["daily"]):
        total += day["defects"]
        start = day["date"]
        if total >= CSV_REGIONS:
            break
    return {"format": "csv", "start_date": start}, total


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
        bound = "+" if body.get("total_is_lower_bound") else ""
        return f"total {body['total']}{bound}"
    return f"{body['totals']['images']} images"


def time_csv(session, base, params, pid):
    """Time to the first byte and in all, rows, and the agent's RSS growth meanwhile."""
    with bc.RssSampler(pid) as rss:
        started = time.perf_counter()
        response = session.get(f"{base}/query/defects", params=params, stream=True, timeout=600)
        first_byte, lines = None, 0
        for chunk in response.iter_content(64 * 1024):
            if first_byte is None:
                first_byte = time.perf_counter() - started
            lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
    return first_byte, elapsed, lines - 1, rss.growth_mb


def default_target(url, images):
    if not bc.is_mysql(url):
        return 200.0
    return 100.0 if images <= 200_000 else 250.0


def main(argv=None):
    args = parse_args(argv)
    url = args.database_url
    bc.check_loopback(url)
    if args.seed:
        import seed_history

        seed_history.main(["--database-url", url, "--images", str(args.seed), "--reset"])
    print(bc.machine_line(url))
    counts = row_counts(url)
    print("rows: " + ", ".join(f"{name} {count:,}" for name, count in counts.items() if count))
    if bc.is_mysql(url):
        print(mysql_setup(url))
    target = args.target_ms or default_target(url, counts["images"])
    work = Path(tempfile.mkdtemp(prefix="aoi-bench-queries-"))
    # Nothing listens on the model port: queries never call the model service.
    env = bc.agent_env(url, work / "storage", f"http://127.0.0.1:{bc.free_port()}")
    agent = bc.start_agent(env, log_dir=work)
    rows = []
    try:
        session = requests.Session()
        base = agent.url
        found, (csv_params, csv_expected) = cases(session, base)
        for path, params in found:
            samples, body = time_case(session, base + path, params, args.warmup, args.requests)
            rows.append((path, params, samples, body))
        csv_result = time_csv(session, base, csv_params, agent.pid)
    finally:
        agent.stop()
    print(f"\n{args.requests} sequential requests per case after {args.warmup} warm-up requests")
    print(f"{'endpoint':<16}{'parameters':<74}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}  target")
    missed = 0
    for path, params, samples, body in rows:
        p50, p95 = bc.percentile(samples, 0.50), bc.percentile(samples, 0.95)
        ok = p95 <= target
        missed += not ok
        shown = {k: (v[:10] + "…" if k == "cursor" else v) for k, v in params.items()}
        print(
            f"{path:<16}{describe(shown)[:72]:<74}{p50:8.1f}{p95:8.1f}{max(samples):8.1f}"
            f"  p95 <= {target:.0f} ms {bc.verdict(ok)} ({result_size(body)})"
        )
    first_byte, elapsed, lines, growth = csv_result
    ok = first_byte <= 0.5 and growth <= 50 and lines == csv_expected
    missed += not ok
    print(
        f"CSV export {describe(csv_params)}: {lines:,} rows (expected {csv_expected:,}), "
        f"first byte {first_byte * 1000:.0f} ms, all {elapsed:.1f} s, agent RSS growth "
        f"{growth:.1f} MB; targets first byte <= 500 ms, RSS <= 50 MB {bc.verdict(ok)}"
    )
    print(bc.machine_line())
    if bc.is_mysql(url) and not args.no_explain:
        explain_all([(path, params) for path, params, _, _ in rows], url)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if missed else 0


def row_counts(url):
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: conn.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar()
                for name in ("images", "classes", "regions", "batches")
            }
    finally:
        engine.dispose()


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
    finally:
        engine.dispose()
    total_mb = sum(size for _, _, size in sizes) / 2**20
    return (
        f"images+classes+regions {total_mb:,.0f} MB "
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
