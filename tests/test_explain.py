"""History, region search and statistics answer exactly what a brute-force filter over
the same rows answers, for every filter combination, on rows inserted with plain SQL
and then `flask aoi reindex` (and on rows the ORM keeps up to date); and their
statements use indexes (EXPLAIN on MariaDB).

The EXPLAIN tests run on MariaDB/MySQL only; the equivalence tests on every backend.
"""

import itertools
import json
import random
from datetime import datetime, timedelta

import pytest
from conftest import ON_MYSQL
from sqlalchemy import delete, event, inspect, select, text, update

from aoi_flask.extensions import db
from aoi_flask.models import (
    CLASS_IDS,
    CLASS_NAMES,
    TRACE_FIELDS,
    Batch,
    DefectClass,
    Image,
    Region,
    RegionReview,
    StatsDay,
    StatsDayClass,
)
from aoi_flask.services import derived, queries
from aoi_flask.services.queries import REGION_SORTS, Window

# The EXPLAIN tests need tables big enough that MariaDB's cost model prefers the
# indexes it prefers on real data (below ~2,000 images it scans a small table
# instead); the equivalence tests need only a few hundred.
EXPLAIN_IMAGES = 4000
IMAGES = 400
START = datetime(2026, 1, 1)
CLASS_WEIGHTS = (0.5, 0.08, 0.17, 0.25)
BIG_TABLES = ("images", "classes", "regions")

mysql_only = pytest.mark.skipif(not ON_MYSQL, reason="EXPLAIN plans are checked on MariaDB/MySQL")


def seed(count=IMAGES, seed_value=5):
    """`count` images over 60 days (some sharing a second, some in batches), four class
    rows each and about ten regions spread over the classes."""
    rng = random.Random(seed_value)
    images, classes, regions, batches = [], [], [], []
    moment = START
    batch_id, batch_left = None, 0
    for index in range(count):
        if rng.random() > 0.1:  # 10 % share the previous image's second
            moment += timedelta(seconds=rng.randint(1, 60 * 60 * 24 * 60 * 2 // count))
        if batch_left == 0 and rng.random() < 0.05:
            batch_id, batch_left = f"B{index:05d}", rng.randint(5, 20)
            batches.append({"batch_id": batch_id, "total_files": batch_left, "created_at": moment})
        img_id = f"{moment:%Y%m%d_%H%M%S}_{index:06d}"
        per_class = [0, 0, 0, 0]
        if rng.random() > 0.12:
            for _ in range(rng.randint(1, 20)):
                per_class[rng.choices(range(4), CLASS_WEIGHTS)[0]] += 1
        images.append(image_row(img_id, moment, batch_id if batch_left else None, per_class, index))
        batch_left = max(0, batch_left - 1)
        for class_id, name in CLASS_NAMES.items():
            class_uid = f"{img_id}_{class_id}"
            own = [region_row(rng, class_uid, img_id, n) for n in range(per_class[class_id - 1])]
            regions.extend(own)
            classes.append(
                {
                    "class_unique_id": class_uid,
                    "img_unique_id": img_id,
                    "class_id": class_id,
                    "class_name": name,
                    "total_regions": len(own),
                    "total_area_pixels": sum(r["area_pixels"] for r in own),
                }
            )
    reviews = [review_row(region, n) for n, region in enumerate(regions) if n % 6 < 3]
    with db.engine.begin() as conn:
        for table, rows in (
            (Batch, batches),
            (Image, images),
            (DefectClass, classes),
            (Region, regions),
            (RegionReview, reviews),
        ):
            if rows:
                conn.execute(table.__table__.insert(), rows)
    derived.rebuild(db.engine)  # what `flask aoi reindex` runs
    if ON_MYSQL:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE TABLE images, classes, regions, batches")).fetchall()
    return Rows(images, classes, regions, batches, reviews)


class Rows:
    """The seeded rows, joined in Python for the brute-force answers."""

    def __init__(self, images, classes, regions, batches, reviews=()):
        self.images = {row["img_unique_id"]: row for row in images}
        self.classes = {row["class_unique_id"]: row for row in classes}
        self.regions = regions
        self.batches = batches
        dispositions = {row["region_unique_id"]: row["disposition"] for row in reviews}
        for region in regions:
            image = self.images[region["img_unique_id"]]
            defect_class = self.classes[region["class_unique_id"]]
            region["class_name"] = defect_class["class_name"]
            region["class_id"] = defect_class["class_id"]
            region["timestamp"] = image["timestamp"]
            region["batch_id"] = image["batch_id"]
            for name in TRACE_FIELDS:
                region[name] = image[name]
            region["disposition"] = dispositions.get(region["region_unique_id"], "unreviewed")


# Traceability values as a fab's own loader writes them (issue #16): a few lots and tools.
LOTS, TOOLS = 7, 3


def image_row(img_id, moment, batch_id, per_class, index=0):
    day = f"{moment:%Y%m%d}"
    return {
        "img_unique_id": img_id,
        "image_height": 1792,
        "image_width": 1792,
        "processing_time_seconds": 0.5 + sum(per_class) / 40,
        "timestamp": moment,
        "input_image_path": f"uploads/{day}/{img_id}_w.jpeg",
        "original_filename": "w.jpeg",
        "batch_id": batch_id,
        # Tools that know only the specified columns leave it empty: reindex derives it.
        "total_defects": None if img_id.endswith("7") else sum(per_class),
        "stored_bytes": 1000,
        "lot_id": f"LOT{index % LOTS}",
        "wafer_id": f"W{index % 25:02d}",
        "tool_id": f"AOI-{index % TOOLS}" if index % 10 else None,
        "recipe": "M1_POST_CMP",
        "layer": "M1",
        "operator": None,
        "reviewed_at": moment + timedelta(hours=1) if index % 5 == 0 else None,
        "reviewed_by": "qa" if index % 5 == 0 else None,
    }


def review_row(region, n):
    """A third of the regions have a review row; an explicit `unreviewed` one among them."""
    return {
        "region_unique_id": region["region_unique_id"],
        "img_unique_id": region["img_unique_id"],
        "disposition": ("true_defect", "false_call", "unreviewed")[n % 6],
        "reviewed_by": "qa",
        "reviewed_at": START,
    }


def region_row(rng, class_uid, img_id, number):
    area = int(rng.lognormvariate(3.5, 1.0)) + 3
    return {
        "region_unique_id": f"{class_uid}_{number + 1}",
        "class_unique_id": class_uid,
        "img_unique_id": img_id,
        "region_id": number + 1,
        "centroid_x": rng.uniform(0, 1791),
        "centroid_y": rng.uniform(0, 1791),
        "bbox_x": rng.randint(0, 1700),
        "bbox_y": rng.randint(0, 1700),
        "bbox_width": rng.randint(1, 60),
        "bbox_height": rng.randint(1, 60),
        "area_pixels": area,
        "perimeter": rng.uniform(5, 200),
        "major_axis": rng.uniform(2, 60),
        "minor_axis": rng.uniform(1, 30),
        "circularity": rng.uniform(0.1, 0.99),
        "aspect_ratio": rng.uniform(1.0, 6.0),
    }


@pytest.fixture
def seeded(app):
    with app.app_context():
        yield seed()


@pytest.fixture
def seeded_large(app):
    with app.app_context():
        yield seed(EXPLAIN_IMAGES)


# ---- EXPLAIN ---------------------------------------------------------------------------


def captured_selects(run):
    """The SELECT statements (with their parameters) that `run()` sends."""
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert statements
    return statements


def plan_tables(statement, parameters):
    """(table, access type, key) of every table access in EXPLAIN FORMAT=JSON."""
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN FORMAT=JSON " + statement, parameters)
        plan = json.loads(cursor.fetchone()[0])
    finally:
        raw.close()
    found = []

    def walk(node):
        if isinstance(node, dict):
            table = node.get("table")
            if isinstance(table, dict) and "table_name" in table:
                found.append((table["table_name"], table.get("access_type"), table.get("key")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


def assert_indexed(run, expected_keys=None):
    """Every access to images/classes/regions uses an index, never a full table scan;
    with `expected_keys`, each of those tables (if read) through one of the given keys."""
    accesses = []
    for statement, parameters in captured_selects(run):
        for table, access, key in plan_tables(statement, parameters):
            if table not in BIG_TABLES:
                continue
            accesses.append((table, access, key))
            assert access != "ALL" and key, f"full scan of {table}: {statement}"
            if expected_keys and table in expected_keys:
                assert key in expected_keys[table], (table, key, statement)
    return accesses


# ---- brute force ------------------------------------------------------------------------


def in_window(moment, window):
    return all(
        condition
        for condition in (
            window.start is None or moment >= window.start,
            window.end is None
            or (
                moment < window.end + timedelta(days=1)
                if window.end_is_date
                else moment <= window.end
            ),
        )
    )


REGION_RANGES = {
    "area": "area_pixels",
    "circularity": "circularity",
    "aspect_ratio": "aspect_ratio",
}


def brute_regions(rows, window, filters, sort):
    """Every matching region id, in `sort` order (ties by id in the same direction)."""
    found = []
    for region in rows.regions:
        if not in_window(region["timestamp"], window):
            continue
        if any(
            filters.get(name) is not None and region[name] != filters[name]
            for name in ("class_name", "batch_id", "img_unique_id", "disposition", *TRACE_FIELDS)
        ):
            continue
        if any(
            (filters.get(f"min_{name}") is not None and region[column] < filters[f"min_{name}"])
            or (filters.get(f"max_{name}") is not None and region[column] > filters[f"max_{name}"])
            for name, column in REGION_RANGES.items()
        ):
            continue
        found.append(region)
    column, descending, _ = REGION_SORTS[sort]
    key = "timestamp" if column.key == "image_timestamp" else column.key
    found.sort(key=lambda r: (r[key], r["region_unique_id"]), reverse=descending)
    return [r["region_unique_id"] for r in found]


def brute_images(rows, window, class_name, batch_id, sort, trace=None, reviewed=None):
    found = [
        image
        for image in rows.images.values()
        if in_window(image["timestamp"], window)
        and (batch_id is None or image["batch_id"] == batch_id)
        and all(image[name] == value for name, value in (trace or {}).items())
        and (reviewed is None or (image["reviewed_at"] is not None) == reviewed)
        and (
            class_name is None
            or rows.classes[f"{image['img_unique_id']}_{CLASS_IDS[class_name]}"]["total_regions"]
            > 0
        )
    ]
    descending = sort in ("newest", "most_defects")
    if sort in ("newest", "oldest"):
        found.sort(key=lambda i: (i["timestamp"], i["img_unique_id"]), reverse=descending)
    else:
        found.sort(key=lambda i: i["img_unique_id"], reverse=True)
        found.sort(key=lambda i: i["timestamp"], reverse=True)
        found.sort(key=lambda i: defects(rows, i), reverse=descending)
    return [i["img_unique_id"] for i in found]


def defects(rows, image):
    return sum(rows.classes[f"{image['img_unique_id']}_{c}"]["total_regions"] for c in CLASS_NAMES)


WINDOWS = [
    Window(),
    Window(start=START + timedelta(days=15), end=START + timedelta(days=45), end_is_date=True),
    # Partial days at both edges: rollups for the whole days, rows for the edges.
    Window(start=START + timedelta(days=3, hours=7), end=START + timedelta(days=20, hours=13)),
    Window(start=START + timedelta(days=9, hours=2), end=START + timedelta(days=9, hours=20)),
]


def region_combinations(rows):
    batch_id = next(row["batch_id"] for row in rows.images.values() if row["batch_id"])
    img_id = next(row["img_unique_id"] for row in rows.images.values() if defects(rows, row) > 5)
    options = {
        "class_name": (None, "PI_Particle", "PR_Peeling"),
        "area": (None, (20, 200)),
        "circularity": (None, (0.5, 0.8)),
        "aspect_ratio": (None, (None, 2.5)),
        "extra": ({}, {"batch_id": batch_id}, {"img_unique_id": img_id}),
    }
    for class_name, area, circ, aspect, extra in itertools.product(*options.values()):
        filters = {"class_name": class_name, **extra}
        for name, bounds in (("area", area), ("circularity", circ), ("aspect_ratio", aspect)):
            if bounds:
                filters[f"min_{name}"], filters[f"max_{name}"] = bounds
        yield filters


def test_every_region_filter_combination_answers_like_brute_force(seeded, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 250)  # so lower-bound totals occur too
    sorts = list(REGION_SORTS)
    checked = 0
    for n, filters in enumerate(region_combinations(seeded)):
        for window in WINDOWS[n % 2 :: 2]:
            sort = sorts[(n + len(window.conditions(Image.timestamp))) % len(sorts)]
            expected = brute_regions(seeded, window, filters, sort)
            total, bounded, rows, cursor = queries.search_regions(
                window, filters, sort=sort, page=2, limit=7
            )
            assert bounded == (len(expected) > 250), (filters, window)
            assert total == min(len(expected), 250)
            assert [r.Region.region_unique_id for r in rows] == expected[7:14], (filters, sort)
            # The cursor of page 1 leads to page 2's rows.
            _, _, first, cursor = queries.search_regions(
                window, filters, sort=sort, page=1, limit=7
            )
            if len(expected) > 7:
                _, _, second, _ = queries.search_regions(
                    window, filters, sort=sort, page=1, limit=7, cursor=cursor
                )
                assert [r.Region.region_unique_id for r in second] == expected[7:14]
            else:
                assert cursor is None
            checked += 1
    assert checked == 3 * 2 * 2 * 2 * 3 * 2


@pytest.mark.parametrize("sort", list(REGION_SORTS))
def test_region_cursor_walks_every_row_once_in_order(seeded, sort):
    filters = {"min_area": 40}
    expected = brute_regions(seeded, Window(), filters, sort)
    seen, cursor = [], None
    while True:
        _, _, rows, cursor = queries.search_regions(
            Window(), filters, sort=sort, page=1, limit=200, cursor=cursor
        )
        seen += [r.Region.region_unique_id for r in rows]
        if cursor is None:
            break
    assert seen == expected


def test_region_rows_carry_the_joined_fields(seeded):
    _, _, rows, _ = queries.search_regions(Window(), {}, sort="newest", page=1, limit=50)
    by_id = {r["region_unique_id"]: r for r in seeded.regions}
    for row in rows:
        region = by_id[row.Region.region_unique_id]
        assert (row.class_name, row.class_id, row.timestamp, row.batch_id) == (
            region["class_name"],
            region["class_id"],
            region["timestamp"],
            region["batch_id"],
        )


def test_csv_stream_equals_brute_force(seeded):
    filters = {"class_name": "Env_Particle", "max_circularity": 0.7}
    rows = list(queries.stream_regions(Window(), filters, sort="area_desc"))
    assert [r.Region.region_unique_id for r in rows] == brute_regions(
        seeded, Window(), filters, "area_desc"
    )
    paged = list(queries.stream_regions(Window(), filters, sort="oldest", page=3, limit=9))
    assert [r.Region.region_unique_id for r in paged] == brute_regions(
        seeded, Window(), filters, "oldest"
    )[18:27]


@pytest.mark.parametrize("sort", ["newest", "oldest", "most_defects", "fewest_defects"])
def test_every_history_filter_combination_answers_like_brute_force(seeded, sort):
    batch_id = next(row["batch_id"] for row in seeded.images.values() if row["batch_id"])
    for window, class_name, batch in itertools.product(
        WINDOWS, (None, *CLASS_IDS), (None, batch_id)
    ):
        expected = brute_images(seeded, window, class_name, batch, sort)
        total, rows, cursor = queries.list_images(
            window, class_name=class_name, batch_id=batch, sort=sort, page=2, limit=6
        )
        assert total == len(expected), (window, class_name, batch)
        assert [r.img_unique_id for r in rows] == expected[6:12]
        _, _, cursor = queries.list_images(
            window, class_name=class_name, batch_id=batch, sort=sort, page=1, limit=6
        )
        if len(expected) > 6:
            _, second, _ = queries.list_images(
                window,
                class_name=class_name,
                batch_id=batch,
                sort=sort,
                page=1,
                limit=6,
                cursor=cursor,
            )
            assert [r.img_unique_id for r in second] == expected[6:12]


def brute_stats(rows, window, trace=None):
    images = [
        i
        for i in rows.images.values()
        if in_window(i["timestamp"], window)
        and all(i[name] == value for name, value in (trace or {}).items())
    ]
    # Every class, with zeros when the window holds none.
    classes = {(class_id, name): [0, 0, 0] for class_id, name in CLASS_NAMES.items()}
    for image in images:
        for class_id, name in CLASS_NAMES.items():
            row = rows.classes[f"{image['img_unique_id']}_{class_id}"]
            entry = classes.setdefault((class_id, name), [0, 0, 0])
            entry[0] += row["total_regions"] > 0
            entry[1] += row["total_regions"]
            entry[2] += row["total_area_pixels"]
    daily = {}
    for image in images:
        entry = daily.setdefault(f"{image['timestamp']:%Y-%m-%d}", [0, 0])
        entry[0] += 1
        entry[1] += defects(rows, image)
    times = [i["processing_time_seconds"] for i in images]
    return {
        "images": len(images),
        "regions": sum(defects(rows, i) for i in images),
        "mean": sum(times) / len(times) if times else None,
        "min": min(times, default=None),
        "max": max(times, default=None),
        "first": min((i["timestamp"] for i in images), default=None),
        "last": max((i["timestamp"] for i in images), default=None),
        "bytes": 1000 * len(images),
        "classes": [
            {"class_id": c, "class_name": n, "images": a, "regions": b, "area_pixels": d}
            for (c, n), (a, b, d) in sorted(classes.items())
        ],
        "daily": [
            {"date": day, "images": a, "defects": b} for day, (a, b) in sorted(daily.items())
        ],
    }


def stats_view(body):
    return {
        "images": body["totals"]["images"],
        "regions": body["totals"]["regions"],
        "mean": body["processing_time"]["mean"],
        "min": body["processing_time"]["min"],
        "max": body["processing_time"]["max"],
        "first": body["date_range"]["first"],
        "last": body["date_range"]["last"],
        "bytes": body["storage"]["bytes_used"],
        "classes": body["classes"],
        "daily": body["daily"],
    }


@pytest.mark.parametrize("window", WINDOWS + [Window(start=START + timedelta(days=400))])
def test_stats_answer_like_brute_force(seeded, window):
    got = stats_view(queries.statistics(window))
    expected = brute_stats(seeded, window)
    if expected["mean"] is not None:
        assert got.pop("mean") == pytest.approx(expected.pop("mean"))
    assert got == expected


# ---- traceability and review filters (issue #16) on the same rows -----------------------

TRACE_CHOICES = ({}, {"lot_id": "LOT3"}, {"tool_id": "AOI-1"}, {"lot_id": "LOT2", "layer": "M1"})


@pytest.mark.parametrize("few_images", [500, 10])
def test_trace_and_disposition_filters_answer_like_brute_force(seeded, monkeypatch, few_images):
    """Rows loaded with plain SQL (traceability values and reviews included), then
    reindexed: the trace filters on the denormalised region search, both by the ids of
    few matching images and by the subquery of many."""
    monkeypatch.setattr(queries, "COUNT_CAP", 250)
    monkeypatch.setattr(queries, "FEW_TRACED_IMAGES", few_images)
    sorts = list(REGION_SORTS)
    combinations = itertools.product(
        TRACE_CHOICES,
        (None, "true_defect", "false_call", "unreviewed"),
        (None, "PI_Particle"),
        ({}, {"min_area": 20, "max_area": 200}),
    )
    for n, (trace, disposition, class_name, ranges) in enumerate(combinations):
        filters = {**trace, "disposition": disposition, "class_name": class_name, **ranges}
        window, sort = WINDOWS[n % len(WINDOWS)], sorts[n % len(sorts)]
        expected = brute_regions(seeded, window, filters, sort)
        total, bounded, rows, cursor = queries.search_regions(
            window, filters, sort=sort, page=2, limit=7
        )
        assert (total, bounded) == (min(len(expected), 250), len(expected) > 250), filters
        assert [r.Region.region_unique_id for r in rows] == expected[7:14], (filters, sort)
        _, _, _, cursor = queries.search_regions(window, filters, sort=sort, page=1, limit=7)
        if len(expected) > 7:
            _, _, second, _ = queries.search_regions(
                window, filters, sort=sort, page=1, limit=7, cursor=cursor
            )
            assert [r.Region.region_unique_id for r in second] == expected[7:14]
        exported = queries.stream_regions(window, filters, sort=sort)
        assert [r.Region.region_unique_id for r in exported] == expected


@pytest.mark.parametrize("sort", ["newest", "most_defects"])
def test_trace_and_reviewed_history_answers_like_brute_force(seeded, sort):
    for window, trace, reviewed, class_name in itertools.product(
        WINDOWS, TRACE_CHOICES, (None, True, False), (None, "PR_Peeling")
    ):
        expected = brute_images(seeded, window, class_name, None, sort, trace, reviewed)
        options = {"class_name": class_name, "batch_id": None, "sort": sort, "limit": 6}
        options.update(trace=trace, reviewed=reviewed)
        total, rows, cursor = queries.list_images(window, page=2, **options)
        assert total == len(expected), (window, trace, reviewed, class_name)
        assert [r.img_unique_id for r in rows] == expected[6:12]
        _, _, cursor = queries.list_images(window, page=1, **options)
        if len(expected) > 6:
            _, second, _ = queries.list_images(window, page=1, cursor=cursor, **options)
            assert [r.img_unique_id for r in second] == expected[6:12]


@pytest.mark.parametrize("trace", TRACE_CHOICES[1:])
@pytest.mark.parametrize("window", WINDOWS)
def test_traced_stats_answer_like_brute_force(seeded, window, trace):
    body = queries.statistics(window, trace)
    got, expected = stats_view(body), brute_stats(seeded, window, trace)
    if expected["mean"] is not None:
        assert got.pop("mean") == pytest.approx(expected.pop("mean"))
    assert got == expected
    batches = {
        i["batch_id"]
        for i in seeded.images.values()
        if i["batch_id"]
        and in_window(i["timestamp"], window)
        and all(i[k] == v for k, v in trace.items())
    }
    assert body["totals"]["batches"] == len(batches)


def rollups():
    return (
        sorted(tuple(r) for r in db.session.execute(select(*StatsDay.__table__.c)).all()),
        sorted(tuple(r) for r in db.session.execute(select(*StatsDayClass.__table__.c)).all()),
    )


def approx_rows(rows):
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def test_orm_writes_keep_derived_data_equal_to_a_rebuild(seeded):
    """Edits, deletes and purges through the ORM keep the rollups and region columns as
    a full rebuild leaves them."""
    ids = sorted(seeded.images)
    moved = db.session.get(Image, ids[10])
    moved.timestamp = moved.timestamp + timedelta(days=3, hours=5)
    moved.batch_id = "B-moved"
    db.session.get(Image, ids[20]).stored_bytes = 0  # what retention does
    db.session.delete(db.session.get(Image, ids[30]))
    db.session.commit()
    # ORM statements (no flush) are followed too.
    db.session.execute(
        update(Image)
        .where(Image.img_unique_id == ids[40])
        .values(timestamp=START - timedelta(days=9))
    )
    db.session.execute(delete(Image).where(Image.img_unique_id == ids[50]))
    db.session.commit()
    bulk_moved = db.session.scalars(
        select(Region.image_timestamp).where(Region.img_unique_id == ids[40])
    ).all()
    assert set(bulk_moved) <= {START - timedelta(days=9)}
    regions = db.session.scalars(select(Region).where(Region.img_unique_id == ids[10])).all()
    assert {(r.image_timestamp, r.batch_id) for r in regions} <= {(moved.timestamp, "B-moved")}
    kept = rollups()
    db.session.rollback()
    derived.rebuild(db.engine)
    db.session.rollback()  # a fresh snapshot (REPEATABLE READ on MariaDB)
    rebuilt = rollups()
    assert [approx_rows(t) for t in kept] == [approx_rows(t) for t in rebuilt]


def test_reindex_is_idempotent_and_fills_rows_loaded_with_plain_sql(seeded, runner):
    before = rollups()
    db.session.rollback()
    with db.engine.begin() as conn:  # another tool empties the derived data
        conn.execute(Region.__table__.update().values(class_id=None, image_timestamp=None))
        conn.execute(StatsDay.__table__.delete())
    db.session.rollback()  # a fresh snapshot (REPEATABLE READ on MariaDB)
    assert queries.search_regions(Window(), {}, sort="newest", page=1, limit=5)[0] == 0
    for _ in range(2):
        result = runner.invoke(args=["aoi", "reindex", "--chunk", "150"])
        assert result.exit_code == 0, result.output
        assert f"reindexed {len(seeded.images)} images" in result.output
        assert "images/s" in result.output
    db.session.rollback()  # a fresh snapshot (REPEATABLE READ on MariaDB)
    assert [approx_rows(t) for t in rollups()] == [approx_rows(t) for t in before]
    expected = brute_regions(seeded, Window(), {}, "newest")
    total, _, rows, _ = queries.search_regions(Window(), {}, sort="newest", page=1, limit=5)
    assert [r.Region.region_unique_id for r in rows] == expected[:5]


# ---- EXPLAIN ------------------------------------------------------------------------------


@mysql_only
def test_region_search_reads_only_its_indexes(seeded_large):
    search_keys = {
        "ix_regions_class_time",
        "ix_regions_class_area",
        "ix_regions_class_circularity",
        "ix_regions_class_aspect",
        "ix_regions_batch",
        "PRIMARY",
    }
    for filters, sort in (
        ({"class_name": "PI_Particle", "min_area": 20, "max_area": 200}, "newest"),
        ({"min_circularity": 0.5, "max_circularity": 0.8}, "area_desc"),
        ({}, "aspect_ratio_asc"),
    ):
        accesses = assert_indexed(
            lambda filters=filters, sort=sort: queries.search_regions(
                Window(start=START + timedelta(days=5)), filters, sort=sort, page=3, limit=20
            ),
            {"regions": search_keys, "classes": {"PRIMARY"}, "images": {"PRIMARY"}},
        )
        assert "regions" in {table for table, _, _ in accesses}


@mysql_only
def test_history_and_stats_use_indexes(seeded_large):
    window = Window(start=START + timedelta(days=20, hours=3), end=START + timedelta(days=27))
    for class_name in (None, "Copper_Nodule"):
        assert_indexed(
            lambda class_name=class_name: queries.list_images(
                window, class_name=class_name, batch_id=None, sort="newest", page=1, limit=20
            )
        )
    assert_indexed(lambda: queries.statistics(window))


def test_reindex_rebuilds_the_search_indexes_around_a_big_fill(seeded, runner, monkeypatch):
    """Many empty rows: the search indexes are dropped for the pass and built after it;
    one an interrupted run left missing is built again."""
    monkeypatch.setattr(derived, "INDEX_REBUILD_ROWS", 100)
    with db.engine.begin() as conn:
        conn.execute(Region.__table__.update().values(class_id=None))
    result = runner.invoke(args=["aoi", "reindex"])
    assert result.exit_code == 0, result.output
    assert "search indexes rebuilt after the pass" in result.output
    assert "built 5 search indexes" in result.output
    names = {index["name"] for index in inspect(db.engine).get_indexes("regions")}
    assert {index.name for index in derived.search_indexes()} <= names
    next(i for i in derived.search_indexes() if i.name == "ix_regions_class_area").drop(db.engine)
    result = runner.invoke(args=["aoi", "reindex"])
    assert "built 1 search indexes" in result.output
    db.session.rollback()
    expected = brute_regions(seeded, Window(), {"min_area": 30}, "area_desc")
    _, _, rows, _ = queries.search_regions(
        Window(), {"min_area": 30}, sort="area_desc", page=1, limit=9
    )
    assert [r.Region.region_unique_id for r in rows] == expected[:9]
