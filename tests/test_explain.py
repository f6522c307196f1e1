"""The history, region-search and statistics queries use indexes (EXPLAIN on MariaDB),
and their faster shapes (services/queries.py) answer exactly what the plain shapes do.

The EXPLAIN tests run on MariaDB/MySQL only; the equivalence tests on every backend.
"""

import json
import random
from datetime import datetime, timedelta

import pytest
from conftest import ON_MYSQL
from sqlalchemy import event, func, select, text

from aoi_flask.extensions import db
from aoi_flask.models import CLASS_NAMES, Batch, DefectClass, Image, Region
from aoi_flask.services import queries
from aoi_flask.services.queries import IMAGE_SORTS, REGION_SORTS, Window

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
        images.append(image_row(img_id, moment, batch_id if batch_left else None, per_class))
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
    with db.engine.begin() as conn:
        for table, rows in (
            (Batch, batches),
            (Image, images),
            (DefectClass, classes),
            (Region, regions),
        ):
            if rows:
                conn.execute(table.__table__.insert(), rows)
        if ON_MYSQL:
            conn.execute(text("ANALYZE TABLE images, classes, regions, batches")).fetchall()
    return images


def image_row(img_id, moment, batch_id, per_class):
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
        "total_defects": sum(per_class),
        "stored_bytes": 1000,
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


@mysql_only
def test_history_list_uses_indexes(seeded_large):
    window = Window(start=START + timedelta(days=20), end=START + timedelta(days=27))
    accesses = assert_indexed(
        lambda: queries.list_images(
            window, class_name=None, batch_id=None, sort="newest", page=1, limit=20
        ),
        {"images": {"idx_timestamp", "ix_images_time_totals"}},
    )
    assert ("images", "range") in {(table, access) for table, access, _ in accesses}
    for window in (Window(), Window(start=START + timedelta(days=10))):
        accesses = assert_indexed(
            lambda window=window: queries.list_images(
                window, class_name="Copper_Nodule", batch_id=None, sort="newest", page=1, limit=20
            ),
            {"classes": {"ix_classes_name_regions", "ix_classes_img_totals", "idx_img_id"}},
        )
        assert "classes" in {table for table, _, _ in accesses}


@mysql_only
def test_region_search_uses_indexes(seeded_large):
    filters = {"class_name": "PI_Particle", "min_area": 20, "max_area": 200}
    accesses = assert_indexed(
        lambda: queries.search_regions(Window(), filters, sort="newest", page=1, limit=20),
        {"regions": {"ix_regions_class_measures", "ix_regions_img_measures", "idx_img_id"}},
    )
    assert {"regions", "classes"} <= {table for table, _, _ in accesses}


@mysql_only
def test_stats_per_class_uses_indexes(seeded_large):
    assert_indexed(lambda: queries.class_statistics(Window()), {"classes": {"ix_classes_stats"}})
    window = Window(start=START + timedelta(days=30))
    assert_indexed(
        lambda: queries.statistics(window),
        {
            "images": {"idx_timestamp", "ix_images_time_totals"},
            "classes": {"ix_classes_img_totals"},
        },
    )


# ---- the fast shapes answer what the plain shapes answer ---------------------------------


def plain_images(window, class_name, batch_id, sort, page, limit):
    conditions = queries.image_conditions(window, class_name, batch_id)
    total = db.session.scalar(select(func.count()).select_from(Image).where(*conditions))
    ids = db.session.scalars(
        select(Image.img_unique_id)
        .where(*conditions)
        .order_by(*IMAGE_SORTS[sort])
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return total, ids


def plain_regions(window, filters, sort, page, limit):
    query = queries.region_query(window, filters)
    total = queries.count_regions(query)
    rows = db.session.execute(
        query.order_by(*REGION_SORTS[sort]).offset((page - 1) * limit).limit(limit)
    ).all()
    return total, [tuple(row[1:]) + (row[0].region_unique_id,) for row in rows]


HISTORY_CASES = [
    (Window(), None, None, "newest", 1, 20),
    (Window(), "PR_Peeling", None, "newest", 1, 20),
    (Window(), "Copper_Nodule", None, "oldest", 3, 7),
    (Window(start=START + timedelta(days=5)), "PI_Particle", None, "most_defects", 2, 15),
    (Window(end=START + timedelta(days=40), end_is_date=True), None, None, "oldest", 1, 500),
    (Window(), "Env_Particle", "B-none", "newest", 1, 20),
    (Window(), "PI_Particle", None, "newest", 999, 20),
]


@pytest.mark.parametrize("window,class_name,batch_id,sort,page,limit", HISTORY_CASES)
def test_history_shapes_answer_alike(seeded, window, class_name, batch_id, sort, page, limit):
    total, rows = queries.list_images(
        window, class_name=class_name, batch_id=batch_id, sort=sort, page=page, limit=limit
    )
    assert (total, [r.img_unique_id for r in rows]) == plain_images(
        window, class_name, batch_id, sort, page, limit
    )


def test_history_batch_filter_answers_alike(seeded):
    batch_id = next(row["batch_id"] for row in seeded if row["batch_id"])
    for class_name in (None, "PI_Particle"):
        total, rows = queries.list_images(
            Window(), class_name=class_name, batch_id=batch_id, sort="newest", page=1, limit=5
        )
        assert total > 0 or class_name
        expected = plain_images(Window(), class_name, batch_id, "newest", 1, 5)
        assert (total, [r.img_unique_id for r in rows]) == expected


REGION_CASES = [
    ({}, "newest", 1, 20),
    ({}, "oldest", 4, 25),
    ({"class_name": "PI_Particle", "min_area": 20, "max_area": 200}, "newest", 1, 20),
    ({"class_name": "PI_Particle", "min_area": 20, "max_area": 200}, "oldest", 2, 50),
    ({"min_circularity": 0.5, "max_circularity": 0.8}, "newest", 3, 10),
    ({"class_name": "PR_Peeling", "max_aspect_ratio": 2.0}, "area_desc", 1, 20),
    ({"class_name": "Copper_Nodule", "min_area": 10**6}, "newest", 1, 20),
    ({}, "newest", 10**4, 20),
]


@pytest.mark.parametrize("filters,sort,page,limit", REGION_CASES)
def test_region_shapes_answer_alike(seeded, monkeypatch, filters, sort, page, limit):
    month = Window(start=START + timedelta(days=15), end=START + timedelta(days=45))
    # The time cut with its usual threshold, and forced on for every page.
    for cut in (queries.TIME_CUT_MIN_ROWS, 0):
        monkeypatch.setattr(queries, "TIME_CUT_MIN_ROWS", cut)
        for window in (Window(), month):
            total, rows = queries.search_regions(window, filters, sort=sort, page=page, limit=limit)
            got = [tuple(row[1:]) + (row[0].region_unique_id,) for row in rows]
            assert (total, got) == plain_regions(window, filters, sort, page, limit)


def test_region_batch_and_image_filters_answer_alike(seeded, monkeypatch):
    monkeypatch.setattr(queries, "TIME_CUT_MIN_ROWS", 0)
    batch_id = next(row["batch_id"] for row in seeded if row["batch_id"])
    img_id = next(row["img_unique_id"] for row in seeded if row["total_defects"] > 3)
    for filters in ({"batch_id": batch_id}, {"img_unique_id": img_id, "min_area": 5}):
        total, rows = queries.search_regions(Window(), filters, sort="newest", page=1, limit=3)
        got = [tuple(row[1:]) + (row[0].region_unique_id,) for row in rows]
        assert total > 0
        assert (total, got) == plain_regions(Window(), filters, "newest", 1, 3)
