"""Data the agent derives from the three specified tables (issue #12), and its upkeep.

- regions.class_id / image_timestamp / batch_id: copies of the region's class id and its
  image's timestamp and batch, so region search reads one index (models.py);
- images.total_defects where it is NULL (rows loaded by other tools): the sum of the
  image's classes.total_regions;
- stats_days / stats_day_classes: per-day rollups of images and classes for /stats and
  history totals.

Every ORM write of an image keeps them in the same transaction (`install`: session
hooks, so deletes, retention purges and edits all pass through them). Uploads insert
with Core statements, which pass no hook: services/results.py fills the region copies
in `image_rows` and calls `add_to_rollups` in `insert_image`, in the same transaction.
Rows written straight into the tables by other tools are picked up by `rebuild`
(`flask aoi reindex`, also the back-fill of migration 0005): idempotent, in short
transactions, safe while the agent serves.
"""

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import case, delete, event, func, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..models import DefectClass, Image, Region, StatsDay, StatsDayClass

DAY_CHUNK = 31  # days of rollups rebuilt per transaction
IMAGE_CHUNK = 5000  # images whose regions are re-derived per transaction
DEADLOCK_RETRIES = 5
# Above this many regions with empty derived columns, the search indexes are rebuilt.
INDEX_REBUILD_ROWS = 50_000
WORKERS = 2  # MariaDB: region chunks re-derived in parallel (one connection each)


def day_start(day):
    return datetime(day.year, day.month, day.day)


def day_of(moment):
    return moment.date()


# ---- upkeep on every ORM write ----------------------------------------------------------


def install():
    """Register the session hooks (once per process)."""
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "do_orm_execute", _bulk_statement)


def _before_flush(session, flush_context, instances):
    new = [obj for obj in session.new if isinstance(obj, Image)]
    gone_days, moved = set(), []
    for image in session.deleted:
        if isinstance(image, Image) and image.timestamp is not None:
            gone_days.add(day_of(image.timestamp))
    for image in session.dirty:
        if not isinstance(image, Image) or not session.is_modified(image):
            continue
        state = inspect(image)
        history = state.attrs.timestamp.history
        for moment in (*history.deleted, *history.added, image.timestamp):
            if moment is not None:
                gone_days.add(day_of(moment))
        if history.has_changes() or state.attrs.batch_id.history.has_changes():
            moved.append(image)
    if not (new or gone_days or moved):
        return
    for image in new:
        derive_new_regions(image)
    conn = session.connection()
    # Rollup rows first, image rows after: the order `rebuild` takes its locks in too.
    if gone_days:
        lock_days(conn, gone_days)
    if new:
        add_to_rollups(conn, new)
    pending = session.info.setdefault("aoi_derived", {"days": set(), "moved": []})
    pending["days"] |= gone_days
    pending["moved"] += [(i.img_unique_id, i.timestamp, i.batch_id) for i in moved]


def _after_flush(session, flush_context):
    pending = session.info.pop("aoi_derived", None)
    if not pending:
        return
    conn = session.connection()
    for img_id, moment, batch_id in pending["moved"]:
        conn.execute(
            update(Region)
            .where(Region.img_unique_id == img_id)
            .values(image_timestamp=moment, batch_id=batch_id)
        )
    for day in sorted(pending["days"]):
        rebuild_rollup_days(conn, day, day + timedelta(days=1))


def _bulk_statement(state):
    """ORM UPDATE/DELETE statements on images (`session.execute(update(Image)...)`)
    bypass the flush: re-derive the days and regions they touch around them."""
    if not (state.is_update or state.is_delete):
        return None
    mapper = state.bind_mapper
    if mapper is None or mapper.class_ is not Image:
        return None
    conn = state.session.connection()
    where = state.statement.whereclause
    before = conn.execute(
        select(Image.img_unique_id, Image.timestamp).where(*([where] if where is not None else []))
    ).all()
    days = {day_of(moment) for _, moment in before}
    lock_days(conn, days)
    result = state.invoke_statement()
    ids = [img_id for img_id, _ in before]
    if state.is_update:
        for start in range(0, len(ids), 500):
            after = conn.execute(
                select(Image.img_unique_id, Image.timestamp, Image.batch_id).where(
                    Image.img_unique_id.in_(ids[start : start + 500])
                )
            ).all()
            for img_id, moment, batch_id in after:
                days.add(day_of(moment))
                conn.execute(
                    update(Region)
                    .where(Region.img_unique_id == img_id)
                    .values(image_timestamp=moment, batch_id=batch_id)
                )
    for day in sorted(days):
        rebuild_rollup_days(conn, day, day + timedelta(days=1))
    return result


def derive_new_regions(image):
    for defect_class in image.classes:
        for region in defect_class.regions:
            region.class_id = defect_class.class_id
            region.image_timestamp = image.timestamp
            region.batch_id = image.batch_id


def lock_days(conn, days):
    conn.execute(select(StatsDay.day).where(StatsDay.day.in_(sorted(days))).with_for_update()).all()


def empty_day_totals():
    """A day's (or a window's) image totals before any image is counted."""
    return {
        "images": 0,
        "defects": 0,
        "processing_sum": 0.0,
        "processing_min": None,
        "processing_max": None,
        "stored_bytes": 0,
        "first_at": None,
        "last_at": None,
    }


def add_to_rollups(conn, images):
    """Incremental upkeep for new images: counters add up; min/max/first/last widen."""
    days, classes = {}, {}
    for image in images:
        entry = days.setdefault(day_of(image.timestamp), empty_day_totals())
        seconds = image.processing_time_seconds
        entry["images"] += 1
        entry["defects"] += image.total_defects or 0
        entry["processing_sum"] += seconds
        entry["processing_min"] = min_of(entry["processing_min"], seconds)
        entry["processing_max"] = max_of(entry["processing_max"], seconds)
        entry["stored_bytes"] += image.stored_bytes or 0
        entry["first_at"] = min_of(entry["first_at"], image.timestamp)
        entry["last_at"] = max_of(entry["last_at"], image.timestamp)
        for defect_class in image.classes:
            key = (day_of(image.timestamp), defect_class.class_id, defect_class.class_name)
            counts = classes.setdefault(key, {"images": 0, "regions": 0, "area_pixels": 0})
            counts["images"] += 1 if defect_class.total_regions > 0 else 0
            counts["regions"] += defect_class.total_regions
            counts["area_pixels"] += defect_class.total_area_pixels
    dialect = conn.dialect.name
    # One statement per table (an executemany), in key order: the lock order.
    day_rows = [{"day": day, **entry} for day, entry in sorted(days.items())]
    conn.execute(upsert_day(dialect, list(day_rows[0])), day_rows)
    class_rows = [
        {"day": day, "class_id": class_id, "class_name": name, **counts}
        for (day, class_id, name), counts in sorted(classes.items())
    ]
    if class_rows:
        conn.execute(upsert_class(dialect, list(class_rows[0])), class_rows)


def min_of(a, b):
    return b if a is None else min(a, b)


def max_of(a, b):
    return b if a is None else max(a, b)


def dialect_insert(dialect):
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def upsert(dialect, table, columns, keys, merge):
    """INSERT … ON DUPLICATE KEY / ON CONFLICT of rows with these columns, executed with
    the rows as parameters."""
    statement = dialect_insert(dialect)(table)
    new = statement.inserted if dialect in ("mysql", "mariadb") else statement.excluded
    values = {name: merge(name, table.c[name], new[name]) for name in columns if name not in keys}
    if dialect in ("mysql", "mariadb"):
        return statement.on_duplicate_key_update(**values)
    return statement.on_conflict_do_update(index_elements=list(keys), set_=values)


def upsert_day(dialect, columns):
    least = func.least if dialect in ("mysql", "mariadb") else func.min
    greatest = func.greatest if dialect in ("mysql", "mariadb") else func.max

    def merge(name, old, new):
        if name in ("processing_min", "first_at"):
            return func.coalesce(least(old, new), new)
        if name in ("processing_max", "last_at"):
            return func.coalesce(greatest(old, new), new)
        return old + new

    return upsert(dialect, StatsDay.__table__, columns, ("day",), merge)


def upsert_class(dialect, columns):
    return upsert(
        dialect,
        StatsDayClass.__table__,
        columns,
        ("day", "class_id", "class_name"),
        lambda name, old, new: old + new,
    )


# ---- rebuilding from the three tables ------------------------------------------------


def rebuild_rollup_days(conn, first, stop):
    """Recompute the rollups of the days first <= day < stop from images and classes."""
    start, end = day_start(first), day_start(stop)
    conn.execute(delete(StatsDay).where(StatsDay.day >= first, StatsDay.day < stop))
    conn.execute(delete(StatsDayClass).where(StatsDayClass.day >= first, StatsDayClass.day < stop))
    in_days = (Image.timestamp >= start, Image.timestamp < end)
    day = func.date(Image.timestamp)
    conn.execute(
        StatsDay.__table__.insert().from_select(
            [
                "day",
                "images",
                "defects",
                "processing_sum",
                "processing_min",
                "processing_max",
                "stored_bytes",
                "first_at",
                "last_at",
            ],
            select(
                day,
                func.count(),
                func.coalesce(func.sum(Image.total_defects), 0),
                func.coalesce(func.sum(Image.processing_time_seconds), 0),
                func.min(Image.processing_time_seconds),
                func.max(Image.processing_time_seconds),
                func.coalesce(func.sum(Image.stored_bytes), 0),
                func.min(Image.timestamp),
                func.max(Image.timestamp),
            )
            .where(*in_days)
            .group_by(day),
        )
    )
    conn.execute(
        StatsDayClass.__table__.insert().from_select(
            ["day", "class_id", "class_name", "images", "regions", "area_pixels"],
            select(
                day,
                DefectClass.class_id,
                DefectClass.class_name,
                func.sum(case((DefectClass.total_regions > 0, 1), else_=0)),
                func.sum(DefectClass.total_regions),
                func.sum(DefectClass.total_area_pixels),
            )
            .select_from(Image)
            .join(DefectClass, DefectClass.img_unique_id == Image.img_unique_id)
            .where(*in_days)
            .group_by(day, DefectClass.class_id, DefectClass.class_name),
        )
    )


def derive_image_totals(conn, low, high):
    """images.total_defects where it is NULL, for low <= img_unique_id <= high."""
    conn.execute(
        update(Image)
        .where(Image.img_unique_id.between(low, high), Image.total_defects.is_(None))
        .values(
            total_defects=select(func.coalesce(func.sum(DefectClass.total_regions), 0))
            .where(DefectClass.img_unique_id == Image.img_unique_id)
            .scalar_subquery()
        )
    )


def derive_regions(conn, *, after, high):
    """Fill the derived columns of the regions after < region_unique_id <= high (high
    None: to the end), walking the clustered primary key; rows already right are left
    untouched (no write, no index change). A plain (non-locking) read first: when
    nothing is stale, as on a re-run, the chunk takes no row locks at all."""
    mysql = conn.dialect.name in ("mysql", "mariadb")
    same = "<=>" if mysql else "IS"  # NULL-safe equality
    stale = (
        " WHERE r.region_unique_id > :after"
        + (" AND r.region_unique_id <= :high" if high is not None else "")
        + f" AND NOT (r.class_id {same} c.class_id AND r.image_timestamp {same} i.timestamp"
        f" AND r.batch_id {same} i.batch_id)"
    )
    bounds = {"after": after, "high": high}
    if mysql:
        joined = (
            " regions r JOIN classes c ON c.class_unique_id = r.class_unique_id"
            " JOIN images i ON i.img_unique_id = r.img_unique_id"
        )
        found = conn.execute(text("SELECT 1 FROM" + joined + stale + " LIMIT 1"), bounds)
        if found.first():
            # A multi-table UPDATE: one join per row.
            conn.execute(
                text(
                    "UPDATE" + joined + " SET r.class_id = c.class_id,"
                    " r.image_timestamp = i.timestamp, r.batch_id = i.batch_id" + stale
                ),
                bounds,
            )
        return
    joined = " FROM classes c, images i"
    keys = " AND c.class_unique_id = r.class_unique_id AND i.img_unique_id = r.img_unique_id"
    found = conn.execute(
        text("SELECT 1 FROM regions r, classes c, images i" + stale + keys + " LIMIT 1"), bounds
    )
    if found.first():
        # UPDATE … FROM (SQLite 3.33+).
        conn.execute(
            text(
                "UPDATE regions AS r SET class_id = c.class_id, image_timestamp = i.timestamp,"
                " batch_id = i.batch_id" + joined + stale + keys
            ),
            bounds,
        )


def retrying(engine, work):
    """Run `work(conn)` in its own transaction; a deadlock with a concurrent writer
    (InnoDB picks one side to roll back) is retried. Given a Connection (a migration's),
    the work runs on it, in its transaction."""
    if isinstance(engine, Connection):
        return work(engine)
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with engine.begin() as conn:
                return work(conn)
        except OperationalError as exc:
            code = getattr(exc.orig, "args", [None])[0]
            if code not in (1213, 1205) or attempt == DEADLOCK_RETRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def search_indexes():
    return [index for index in Region.__table__.indexes if index.name.startswith("ix_regions_")]


def defer_search_indexes(engine, report):
    """Many regions with empty derived columns (rows loaded by another tool): updating
    them in place would move every entry of every search index, one random page at a
    time. Drop those indexes for the pass instead and build them afterwards in one
    sorted pass each (queries stay correct meanwhile, only slower). Returns the indexes
    to build: also any a previous interrupted run left missing."""
    if isinstance(engine, Connection):
        return []  # a migration builds its indexes itself
    with engine.connect() as conn:
        present = {index["name"] for index in inspect(conn).get_indexes("regions")}
        empty = conn.execute(
            select(func.count()).select_from(Region).where(Region.class_id.is_(None))
        ).scalar()
    indexes = search_indexes()
    missing = [index for index in indexes if index.name not in present]
    if empty < INDEX_REBUILD_ROWS:
        return missing
    report(f"  {empty} regions without derived columns: search indexes rebuilt after the pass")
    with engine.begin() as conn:
        for index in indexes:
            if index.name in present:
                index.drop(conn)
    return indexes


def build_search_indexes(engine, indexes, report):
    started = time.perf_counter()
    with engine.begin() as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            # One ALTER: one pass over the table for all of them, concurrent writes allowed.
            adds = ", ".join(
                f"ADD INDEX `{index.name}` ({', '.join(f'`{c.name}`' for c in index.columns)})"
                for index in indexes
            )
            conn.execute(text(f"ALTER TABLE regions {adds}"))
        else:
            for index in indexes:
                index.create(conn)
    report(f"  built {len(indexes)} search indexes in {time.perf_counter() - started:.1f} s")


def done_future(value):
    future = Future()
    future.set_result(value)
    return future


def reading(engine):
    return nullcontext(engine) if isinstance(engine, Connection) else engine.connect()


def rebuild(engine, progress=None, image_chunk=IMAGE_CHUNK):
    """Re-derive everything from images, classes and regions. Returns counts and timing."""
    report = progress or (lambda message: None)
    started = time.perf_counter()
    with reading(engine) as conn:
        total = conn.execute(select(func.count()).select_from(Image)).scalar()
    report(f"reindex: {total} images")
    done, after = 0, None
    while True:  # images.total_defects: only the empty ones, read without locks first
        with reading(engine) as conn:
            query = (
                select(Image.img_unique_id)
                .where(Image.total_defects.is_(None))
                .order_by(Image.img_unique_id)
                .limit(image_chunk)
            )
            if after is not None:
                query = query.where(Image.img_unique_id > after)
            ids = conn.execute(query).scalars().all()
        if not ids:
            break
        retrying(engine, lambda conn, a=ids[0], b=ids[-1]: derive_image_totals(conn, a, b))
        done, after = done + len(ids), ids[-1]
    report(f"  image totals: {done} filled, {time.perf_counter() - started:.1f} s")
    with reading(engine) as conn:
        regions = conn.execute(select(func.count()).select_from(Region)).scalar()
    deferred = defer_search_indexes(engine, report)
    chunk = image_chunk * 10  # regions: ~10 per image
    parallel = not isinstance(engine, Connection) and engine.dialect.name in ("mysql", "mariadb")
    with ThreadPoolExecutor(max_workers=WORKERS if parallel else 1) as pool:
        # Chunk bounds are read here, in primary-key order; the joins run in the pool
        # (disjoint key ranges: the workers never wait for each other's locks).
        pending, done, after = deque(), 0, ""
        while after is not None:
            with reading(engine) as conn:
                high = conn.execute(
                    select(Region.region_unique_id)
                    .where(Region.region_unique_id > after)
                    .order_by(Region.region_unique_id)
                    .offset(chunk - 1)
                    .limit(1)
                ).scalar()
            work = partial(derive_regions, after=after, high=high)
            if parallel:
                pending.append(pool.submit(retrying, engine, work))
            else:  # a migration's connection, or SQLite: one writer, in this thread
                pending.append(done_future(retrying(engine, work)))
            after = high
            while pending and (len(pending) > 2 * WORKERS or after is None):
                pending.popleft().result()
                done = min(done + chunk, regions)
                report(f"  regions {done}/{regions}, {time.perf_counter() - started:.1f} s")
    if deferred:
        build_search_indexes(engine, deferred, report)
    regions_seconds = time.perf_counter() - started
    with reading(engine) as conn:
        first, last = conn.execute(
            select(func.min(Image.timestamp), func.max(Image.timestamp))
        ).one()
        stale = conn.execute(select(func.min(StatsDay.day), func.max(StatsDay.day))).one()
    days = [d for d in (first and day_of(first), last and day_of(last), *stale) if d]
    rollup_days = 0
    if days:
        day, stop = min(days), max(days) + timedelta(days=1)
        while day < stop:
            chunk_end = min(day + timedelta(days=DAY_CHUNK), stop)
            retrying(engine, lambda conn, a=day, b=chunk_end: rebuild_rollup_days(conn, a, b))
            rollup_days += (chunk_end - day).days
            day = chunk_end
            report(f"  rollups up to {day - timedelta(days=1)} ({rollup_days} days)")
    elapsed = time.perf_counter() - started
    return {
        "images": total,
        "days": rollup_days,
        "seconds": round(elapsed, 2),
        "regions_seconds": round(regions_seconds, 2),
        "images_per_second": round(total / elapsed) if elapsed and total else None,
    }
