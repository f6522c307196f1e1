"""Fill a database with a year of synthetic AOI history, fast (not through the API).

    python scripts/seed_history.py --database-url \\
        "mysql+pymysql://root@127.0.0.1/aoi_bench?charset=utf8mb4" --reset
    python scripts/seed_history.py --database-url sqlite:////tmp/aoi_bench.sqlite3

Runs the migrations (flask_migrate.upgrade) first, then bulk-inserts with
SQLAlchemy Core in chunks (one transaction per 2,000 images; on MariaDB two loader
processes whose sessions skip foreign-key re-checks, since the generated rows are
consistent by construction): per image 4 class rows and about 10 regions spread
over the classes (realistic measurements), timestamps spread over the last year,
about 30 % of the images in batches (with their `batches`/`batch_items` rows).
Stored paths name files that do not exist: the history queries never read files.
Prints rows/s. Then ANALYZE TABLE on MariaDB, so the optimizer sees the new sizes.
"""

from __future__ import annotations

import argparse
import shutil
import string
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

CLASS_NAMES = {1: "PI_Particle", 2: "PR_Peeling", 3: "Copper_Nodule", 4: "Env_Particle"}
# How defects spread over the classes (particles dominate, peeling is rare).
CLASS_WEIGHTS = np.array([0.50, 0.08, 0.17, 0.25])
ID_ALPHABET = np.array(list(string.ascii_uppercase + string.digits))
MODELS = ("nvidia/segformer-b2-aoi", "oneformer-aoi")
SIZES = ((1792, 1792), (2048, 2048), (1536, 2048))
# Traceability (issue #16), derived from the lot and wafer numbers (no extra random
# draws, so every other generated value stays as it was): 8 tools, ~11 images a lot.
TOOLS = tuple(f"AOI-{n}" for n in range(1, 9))
RECIPES = ("M1_POST_CMP", "M2_POST_CMP", "V1_ETCH", "PI_COAT", "RDL_PLATE", "BUMP")
LAYERS = ("M1", "M2", "V1", "PI", "RDL")
OPERATORS = tuple(f"op{n:02d}" for n in range(1, 13))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="mysql+pymysql://root@127.0.0.1/aoi_bench?charset=utf8mb4",
        help="SQLAlchemy URL (MariaDB on loopback or SQLite); default: the aoi_bench scratch DB",
    )
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--regions-per-image", type=float, default=10.0, help="mean")
    parser.add_argument("--batch-fraction", type=float, default=0.3)
    parser.add_argument("--days", type=int, default=365, help="timestamps spread over N days")
    parser.add_argument("--chunk", type=int, default=5000, help="images per transaction")
    parser.add_argument("--seed", type=int, default=20260225)
    parser.add_argument(
        "--reset",
        action="store_true",
        help="MariaDB: drop and re-create the (scratch) database first; "
        "SQLite: delete the file first",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="loader processes (default: 2 on MariaDB, 1 on SQLite, whose writes serialise)",
    )
    parser.add_argument(
        "--no-bulk",
        action="store_true",
        help="MariaDB: plain multi-row INSERTs with every index in place (default: LOAD DATA "
        "LOCAL INFILE with the secondary indexes built after the load)",
    )
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


# ---- synthetic data ----------------------------------------------------------------------


class HistoryGenerator:
    """Row dicts for images, classes, regions, batches and batch items (numpy-vectorised
    per chunk, so generating a million regions takes seconds, not minutes)."""

    def __init__(
        self, total, *, regions_per_image, batch_fraction, days, seed, now=None, part=(0, 1)
    ):
        self.rng = np.random.default_rng(seed)
        # Worker `part[0]` of `part[1]` draws the first id letter from its own share of
        # the alphabet, so parallel workers can never produce the same id.
        self.first_letters = ID_ALPHABET[part[0] :: part[1]]
        self.total = total
        self.regions_per_image = regions_per_image
        self.now = now or datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        self.span = days * 86400
        self.used_ids = set()
        # Batches hold 10-70 images (40 on average); a group is a batch with the
        # probability that puts `batch_fraction` of the images into batches.
        self.batch_probability = batch_fraction / (40 * (1 - batch_fraction) + batch_fraction)

    def groups(self):
        """Images in time order, in groups: a lone image, or a batch of 10-70 images
        a few seconds apart. Yields (batch_id or None, [moments])."""
        produced = 0
        starts = np.sort(self.rng.integers(0, self.span, self.total))
        while produced < self.total:
            moment = self.now - timedelta(seconds=int(self.span - starts[produced]))
            if self.rng.random() < self.batch_probability:
                size = int(min(self.total - produced, self.rng.integers(10, 71)))
                gaps = np.cumsum(self.rng.integers(1, 3, size)).tolist()
                moments = [min(moment + timedelta(seconds=g), self.now) for g in gaps]
                yield self.new_id(moment), moments
                produced += size
            else:
                yield None, [moment]
                produced += 1

    def new_id(self, moment):
        while True:
            first = self.first_letters[self.rng.integers(0, len(self.first_letters))]
            suffix = first + "".join(ID_ALPHABET[self.rng.integers(0, len(ID_ALPHABET), 5)])
            img_id = f"{moment:%Y%m%d_%H%M%S}_{suffix}"
            if img_id not in self.used_ids:
                self.used_ids.add(img_id)
                return img_id

    def chunks(self, chunk_images):
        pending, rows = [], empty_rows()
        for batch_id, moments in self.groups():
            if batch_id is not None:
                rows["batches"].append(batch_row(batch_id, moments))
            for index, moment in enumerate(moments):
                img_id = self.new_id(moment)
                pending.append((img_id, moment, batch_id))
                if batch_id is not None:
                    rows["batch_items"].append(batch_item(batch_id, index, img_id, moment))
            if len(pending) >= chunk_images:
                self.fill(rows, pending)
                yield rows
                pending, rows = [], empty_rows()
        if pending:
            self.fill(rows, pending)
            yield rows

    def fill(self, rows, pending):
        """Image, class and region rows of `pending` [(img_id, moment, batch_id)]."""
        rng, count = self.rng, len(pending)
        size_index = rng.choice(len(SIZES), count, p=[0.8, 0.15, 0.05])
        heights = np.array([SIZES[i][0] for i in size_index])
        widths = np.array([SIZES[i][1] for i in size_index])
        # 12 % clean images; the rest ~Poisson, so the overall mean is regions_per_image.
        clean = rng.random(count) < 0.12
        n_regions = np.where(clean, 0, rng.poisson(self.regions_per_image / 0.88, count))
        per_class = rng.multinomial(n_regions, CLASS_WEIGHTS)  # (count, 4)
        regions = self.regions(pending, per_class, heights, widths)
        area_sums = np.zeros(count * 4, np.int64)
        np.add.at(area_sums, regions["owner"], regions["area_pixels"])
        self.image_rows(rows, pending, heights, widths, n_regions)
        self.class_rows(rows, pending, per_class, area_sums.reshape(count, 4))
        rows["regions"] = region_rows(regions, pending)

    def image_rows(self, rows, pending, heights, widths, n_regions):
        rng, count = self.rng, len(pending)
        processing = rng.gamma(9.0, 0.07, count).tolist()
        input_bytes = rng.integers(400_000, 2_500_000, count)
        stored = (input_bytes * 3 + rng.integers(20_000, 60_000, count)).tolist()
        lots = rng.integers(1000, 9999, count).tolist()
        wafers = rng.integers(1, 26, count).tolist()
        models = np.where(rng.random(count) < 0.85, MODELS[0], MODELS[1]).tolist()
        for i, (img_id, moment, batch_id) in enumerate(pending):
            day = f"{moment:%Y%m%d}"
            name = f"lot{lots[i]}_w{wafers[i]:02d}.jpeg"
            result_dir = f"results/{day}/{img_id}"
            rows["images"].append(
                {
                    "img_unique_id": img_id,
                    "image_height": int(heights[i]),
                    "image_width": int(widths[i]),
                    "processing_time_seconds": processing[i],
                    "timestamp": moment,
                    "input_image_path": f"uploads/{day}/{img_id}_{name}",
                    "result_image_1_path": f"{result_dir}/combined.png",
                    "result_image_2_path": f"{result_dir}/mask.png",
                    "result_image_3_path": f"{result_dir}/overlay.png",
                    "created_at": moment,
                    "original_filename": name,
                    "model_name": models[i],
                    "batch_id": batch_id,
                    "analysis_json_path": f"{result_dir}/analysis.json",
                    "thumbnail_path": f"{result_dir}/thumbnail.jpg",
                    "total_defects": int(n_regions[i]),
                    "stored_bytes": stored[i],
                    "lot_id": f"LOT{lots[i]}",
                    "wafer_id": f"W{wafers[i]:02d}",
                    "tool_id": TOOLS[lots[i] % len(TOOLS)],
                    "recipe": RECIPES[lots[i] % len(RECIPES)],
                    "layer": LAYERS[wafers[i] % len(LAYERS)],
                    "operator": OPERATORS[(lots[i] // 7) % len(OPERATORS)],
                }
            )

    def class_rows(self, rows, pending, per_class, area_sums):
        per_class, area_sums = per_class.tolist(), area_sums.tolist()
        for i, (img_id, moment, _) in enumerate(pending):
            for c in range(4):
                rows["classes"].append(
                    {
                        "class_unique_id": f"{img_id}_{c + 1}",
                        "img_unique_id": img_id,
                        "class_id": c + 1,
                        "class_name": CLASS_NAMES[c + 1],
                        "total_regions": per_class[i][c],
                        "total_area_pixels": area_sums[i][c],
                        "created_at": moment,
                    }
                )

    def regions(self, pending, per_class, heights, widths):
        """Measurements consistent with each other, like the reference computes them:
        ellipse axes from area and aspect ratio, perimeter from circularity 4πA/P²."""
        rng = self.rng
        counts = per_class.ravel()  # per (image, class), image-major
        owner = np.repeat(np.arange(counts.size), counts)  # index image*4 + class
        total = owner.size
        image = owner // 4
        class_id = owner % 4 + 1
        starts = np.cumsum(counts) - counts
        region_id = np.arange(total) - np.repeat(starts, counts) + 1

        peeling, nodule = class_id == 2, class_id == 3
        area = np.where(
            peeling,
            np.clip(rng.lognormal(7.0, 0.8, total), 400, 200_000),
            np.where(
                nodule,
                np.clip(rng.lognormal(4.5, 0.6, total), 8, 5_000),
                np.clip(rng.lognormal(3.3, 0.9, total), 3, 3_000),
            ),
        ).astype(np.int64)
        aspect = np.where(
            peeling,
            rng.uniform(3.0, 9.0, total),
            1.0 + np.where(nodule, rng.gamma(1.5, 0.12, total), rng.gamma(1.3, 0.35, total)),
        )
        circularity = np.where(
            peeling,
            rng.uniform(0.08, 0.45, total),
            np.clip(
                np.where(nodule, rng.normal(0.82, 0.08, total), rng.normal(0.7, 0.15, total)),
                0.1,
                0.99,
            ),
        )
        minor = np.sqrt(4.0 * area / (np.pi * aspect))
        major = minor * aspect
        perimeter = np.sqrt(4.0 * np.pi * area / circularity)
        cx = rng.uniform(0, 1, total) * (widths[image] - 1)
        cy = rng.uniform(0, 1, total) * (heights[image] - 1)
        long_side = np.maximum(1, np.rint(major)).astype(np.int64)
        short_side = np.maximum(1, np.rint(minor)).astype(np.int64)
        flip = rng.random(total) < 0.5
        bw, bh = np.where(flip, short_side, long_side), np.where(flip, long_side, short_side)
        return {
            "owner": owner,
            "image": image,
            "class_id": class_id,
            "region_id": region_id,
            "centroid_x": cx,
            "centroid_y": cy,
            "bbox_x": np.maximum(0, (cx - bw / 2).astype(np.int64)),
            "bbox_y": np.maximum(0, (cy - bh / 2).astype(np.int64)),
            "bbox_width": bw,
            "bbox_height": bh,
            "area_pixels": area,
            "perimeter": perimeter,
            "major_axis": major,
            "minor_axis": minor,
            "circularity": circularity,
            "aspect_ratio": aspect,
        }


REGION_VALUES = (
    "region_id",
    "centroid_x",
    "centroid_y",
    "bbox_x",
    "bbox_y",
    "bbox_width",
    "bbox_height",
    "area_pixels",
    "perimeter",
    "major_axis",
    "minor_axis",
    "circularity",
    "aspect_ratio",
)


def region_rows(regions, pending):
    columns = [regions[name].tolist() for name in REGION_VALUES]
    rows = []
    for values, image, class_id in zip(
        zip(*columns, strict=True),
        regions["image"].tolist(),
        regions["class_id"].tolist(),
        strict=True,
    ):
        img_id, moment, _ = pending[image]
        class_unique_id = f"{img_id}_{class_id}"
        row = dict(zip(REGION_VALUES, values, strict=True))
        row["region_unique_id"] = f"{class_unique_id}_{values[0]}"
        row["class_unique_id"] = class_unique_id
        row["img_unique_id"] = img_id
        row["created_at"] = moment
        rows.append(row)
    return rows


def batch_row(batch_id, moments):
    return {
        "batch_id": batch_id,
        "total_files": len(moments),
        "created_at": moments[0] - timedelta(seconds=1),
    }


def empty_rows():
    return {name: [] for name in ("batches", "batch_items", "images", "classes", "regions")}


def batch_item(batch_id, index, img_id, moment):
    return {
        "batch_id": batch_id,
        "file_index": index,
        "filename": f"file_{index:03d}.jpeg",
        "state": "done",
        "img_unique_id": img_id,
        "input_path": None,
        "result_dir": f"results/{moment:%Y%m%d}/{img_id}",
        "attempts": 1,
        "queued_at": moment,
        "started_at": moment,
        "finished_at": moment,
    }


# ---- loading -------------------------------------------------------------------------------


def prepare(url, reset):
    bc.check_loopback(url)
    if reset:
        if bc.is_mysql(url):
            bc.reset_mysql_database(url)
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    bc.migrate(url)


def tables():
    from aoi_flask.models import Batch, BatchItem, DefectClass, Image, Region

    # Parents first: every chunk is one transaction in foreign-key order.
    return {
        "batches": Batch.__table__,
        "batch_items": BatchItem.__table__,
        "images": Image.__table__,
        "classes": DefectClass.__table__,
        "regions": Region.__table__,
    }


def fit(table, rows):
    """Drop keys the table does not have (the small batch tables only: their
    optional columns have changed over time); big tables pass through untouched."""
    if table.name not in ("batches", "batch_items"):
        return rows
    columns = set(table.c.keys())
    return [{key: value for key, value in row.items() if key in columns} for row in rows]


def bulk_engine(url, infile=False):
    """An engine for bulk loading. Positional parameters spare PyMySQL a dict per row;
    on MariaDB the session skips foreign-key and unique re-checks (the generated
    rows are consistent by construction and the primary keys unique)."""
    from sqlalchemy import create_engine, event

    if not bc.is_mysql(url):
        return create_engine(url)
    connect_args = {"local_infile": True} if infile else {}
    engine = create_engine(url, paramstyle="format", connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _bulk_session(dbapi_connection, connection_record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION foreign_key_checks=0, unique_checks=0")

    return engine


def tsv_value(value):
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)  # floats: the shortest repr that reads back to the same double


def load_infile(conn, table, rows, folder):
    """One LOAD DATA LOCAL INFILE of `rows` (dicts with the same keys) into `table`."""
    columns = list(rows[0])
    path = Path(folder) / f"{table.name}.tsv"
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines("\t".join(tsv_value(row[c]) for c in columns) + "\n" for row in rows)
    conn.exec_driver_sql(
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{table.name}` CHARACTER SET utf8mb4 "
        f"FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' "
        f"({', '.join(f'`{c}`' for c in columns)})"
    )


def load_part(url, options, part, progress=None):
    """Generate and insert one worker's share; returns its row counts."""
    index, workers = part
    generator = HistoryGenerator(
        options["images"] // workers + (1 if index < options["images"] % workers else 0),
        regions_per_image=options["regions_per_image"],
        batch_fraction=options["batch_fraction"],
        days=options["days"],
        seed=options["seed"] + index,
        part=part,
    )
    engine = bulk_engine(url, infile=options.get("infile", False))
    counts = dict.fromkeys(tables(), 0)
    folder = tempfile.mkdtemp(prefix=f"aoi-seed-{index}-")
    try:
        for rows in generator.chunks(options["chunk"]):
            with engine.begin() as conn:
                for name, table in tables().items():
                    if not rows[name]:
                        continue
                    if options.get("infile"):
                        load_infile(conn, table, fit(table, rows[name]), folder)
                    else:
                        conn.execute(table.insert(), fit(table, rows[name]))
                    counts[name] += len(rows[name])
            if progress is not None:
                progress.put({"worker": index, **counts})
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)
    return counts


def _worker(url, options, part, progress):
    return load_part(url, options, part, progress)


def load(url, options, workers, quiet=False):
    """Run `workers` processes (each its own generator and connection); prints progress."""
    import multiprocessing

    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    manager = context.Manager()
    progress = manager.Queue()
    latest = {}
    with context.Pool(workers) as pool:
        pending = pool.starmap_async(
            _worker, [(url, options, (k, workers), progress) for k in range(workers)]
        )
        while not pending.ready() or not progress.empty():
            try:
                update = progress.get(timeout=0.5)
            except Exception:  # queue.Empty through the manager proxy
                continue
            latest[update["worker"]] = update
            if not quiet:
                images = sum(u["images"] for u in latest.values())
                rows = sum(v for u in latest.values() for k, v in u.items() if k != "worker")
                elapsed = time.perf_counter() - started
                print(
                    f"  {images:>7} images, {rows:>8} rows, {elapsed:6.1f} s, "
                    f"{rows / elapsed:8.0f} rows/s",
                    flush=True,
                )
        results = pending.get()
    manager.shutdown()
    counts = {name: sum(r[name] for r in results) for name in tables()}
    elapsed = time.perf_counter() - started
    return counts, elapsed


DERIVED_TABLES = ("images", "classes", "regions")
# Indexes MariaDB needs for the foreign keys: they stay during a bulk load.
FOREIGN_KEY_INDEXES = {"classes": {"idx_img_id"}, "regions": {"idx_img_id", "idx_class_id"}}


def drop_secondary_indexes(url):
    """MariaDB bulk load: drop the secondary indexes of the big tables (all but the
    ones backing foreign keys) and return their definitions. InnoDB builds an index
    from the loaded rows in one sorted pass, far faster than it maintains it row by
    row once the indexes outgrow a 128 MB buffer pool."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    deferred = {}
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                text(
                    "SELECT table_name, index_name, column_name FROM information_schema.statistics"
                    " WHERE table_schema = DATABASE() AND index_name <> 'PRIMARY'"
                    " AND table_name IN ('images', 'classes', 'regions')"
                    " ORDER BY table_name, index_name, seq_in_index"
                )
            ).all()
            for table, index, column in rows:
                if index not in FOREIGN_KEY_INDEXES.get(table, ()):
                    deferred.setdefault(table, {}).setdefault(index, []).append(column)
            for table, indexes in deferred.items():
                drops = ", ".join(f"DROP INDEX `{name}`" for name in indexes)
                conn.execute(text(f"ALTER TABLE `{table}` {drops}"))
    finally:
        engine.dispose()
    return deferred


def build_indexes(url, deferred, quiet=False):
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table, indexes in deferred.items():
                started = time.perf_counter()
                # The reindex builds the search indexes of `regions` it found missing.
                present = {index["name"] for index in inspect(conn).get_indexes(table)}
                indexes = {n: c for n, c in indexes.items() if n not in present}
                if not indexes:
                    continue
                adds = ", ".join(
                    f"ADD INDEX `{name}` ({', '.join(f'`{c}`' for c in columns)})"
                    for name, columns in indexes.items()
                )
                conn.execute(text(f"ALTER TABLE `{table}` {adds}"))
                if not quiet:
                    print(
                        f"  built {len(indexes)} indexes of {table} in "
                        f"{time.perf_counter() - started:.1f} s",
                        flush=True,
                    )
    finally:
        engine.dispose()


def derive(url, quiet=False):
    """`flask aoi reindex` on the loaded rows (they went straight into the tables)."""
    from sqlalchemy import create_engine

    from aoi_flask.services import derived

    engine = create_engine(url)
    try:
        progress = None if quiet else (lambda line: print(line, flush=True))
        return derived.rebuild(engine, progress=progress)
    finally:
        engine.dispose()


def analyse_tables(url):
    """Fresh index statistics for the optimizer after a bulk load."""
    from sqlalchemy import create_engine, text

    if not bc.is_mysql(url):
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in tables():
                conn.execute(text(f"ANALYZE TABLE `{name}`")).fetchall()
    finally:
        engine.dispose()


def main(argv=None):
    args = parse_args(argv)
    url = args.database_url
    workers = args.workers or (2 if bc.is_mysql(url) else 1)
    print(bc.machine_line(), flush=True)
    print(f"seeding {args.images} images into {url} with {workers} worker(s)", flush=True)
    prepare(url, args.reset)
    options = {
        "images": args.images,
        "regions_per_image": args.regions_per_image,
        "batch_fraction": args.batch_fraction,
        "days": args.days,
        "seed": args.seed,
        "chunk": args.chunk,
    }
    bulk = bc.is_mysql(url) and not args.no_bulk
    deferred = drop_secondary_indexes(url) if bulk else {}
    options["infile"] = bulk
    started = time.perf_counter()
    counts, elapsed = load(url, options, workers, args.quiet)
    print(f"loaded in {elapsed:.1f} s ({'LOAD DATA LOCAL INFILE' if bulk else 'INSERT'})")
    reindex = derive(url, args.quiet)
    print(
        f"reindex (derived columns, rollups and, after a bulk load, the search indexes): "
        f"{reindex['seconds']} s, {reindex['images_per_second']:,} images/s"
    )
    if deferred:
        build_indexes(url, deferred, args.quiet)
    analyse_tables(url)
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    print(
        "rows: "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
        + f"; total {total}"
    )
    print(
        f"seeded in {elapsed:.1f} s: {total / elapsed:,.0f} rows/s "
        f"({counts['images'] / elapsed:,.0f} images/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
