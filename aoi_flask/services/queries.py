"""Reading history: image lists, region search and statistics.

Every filter is a bound parameter through the ORM; the indexes these queries
lean on are declared in models.py and checked with EXPLAIN on MariaDB by
tests/test_explain.py (scripts/bench_queries.py measures them on 100,000 images).

Counts join only the tables their filters need: every region row has exactly one
class row and one image row, and every class row one image row (NOT NULL foreign
keys, enforced on MySQL/MariaDB and on SQLite with PRAGMA foreign_keys=ON), so a
join that filters nothing cannot change a count.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, distinct, exists, func, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import CLASS_NAMES, Batch, DefectClass, Image, Region
from .traceability import disposition_conditions, reviewed_condition, trace_conditions

IMAGE_SORTS = {
    "newest": (Image.timestamp.desc(), Image.img_unique_id.desc()),
    "oldest": (Image.timestamp.asc(), Image.img_unique_id.asc()),
    "most_defects": (Image.total_defects.desc(), Image.timestamp.desc(), Image.img_unique_id),
    "fewest_defects": (Image.total_defects.asc(), Image.timestamp.desc(), Image.img_unique_id),
}
REGION_SORTS = {
    "newest": (Image.timestamp.desc(), Region.region_unique_id),
    "oldest": (Image.timestamp.asc(), Region.region_unique_id),
    "area_desc": (Region.area_pixels.desc(), Region.region_unique_id),
    "area_asc": (Region.area_pixels.asc(), Region.region_unique_id),
    "circularity_desc": (Region.circularity.desc(), Region.region_unique_id),
    "circularity_asc": (Region.circularity.asc(), Region.region_unique_id),
    "aspect_ratio_desc": (Region.aspect_ratio.desc(), Region.region_unique_id),
    "aspect_ratio_asc": (Region.aspect_ratio.asc(), Region.region_unique_id),
}
REGION_RANGES = {
    "area": Region.area_pixels,
    "circularity": Region.circularity,
    "aspect_ratio": Region.aspect_ratio,
}
# Region pages sorted by time are cut at the timestamp of their last row first, when
# at least this many rows match (below it, sorting every match is cheap anyway).
TIME_CUT_MIN_ROWS = 1000


@dataclass
class Window:
    """An inclusive time window; a bare date as `end` means the whole day."""

    start: datetime | None = None
    end: datetime | None = None
    end_is_date: bool = False

    def conditions(self, column):
        conditions = []
        if self.start is not None:
            conditions.append(column >= self.start)
        if self.end is not None:
            if self.end_is_date:
                conditions.append(column < self.end + timedelta(days=1))
            else:
                conditions.append(column <= self.end)
        return conditions


def image_conditions(window, class_name=None, batch_id=None, trace=None, reviewed=None):
    conditions = window.conditions(Image.timestamp)
    conditions += trace_conditions(trace or {}) + reviewed_condition(reviewed)
    if batch_id:
        conditions.append(Image.batch_id == batch_id)
    if class_name:
        conditions.append(
            exists().where(
                DefectClass.img_unique_id == Image.img_unique_id,
                DefectClass.class_name == class_name,
                DefectClass.total_regions > 0,
            )
        )
    return conditions


def list_images(window, *, class_name, batch_id, sort, page, limit, trace=None, reviewed=None):
    conditions = image_conditions(window, class_name, batch_id, trace, reviewed)
    total = count_images(window, class_name, batch_id, conditions)
    if total <= (page - 1) * limit:
        return total, []
    rows = db.session.scalars(
        images_first(select(Image))
        .where(*conditions)
        .options(selectinload(Image.classes))
        .order_by(*IMAGE_SORTS[sort])
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return total, rows


def count_images(window, class_name, batch_id, conditions):
    if class_name and len(conditions) == 1:
        # Only the class filter: count the distinct images of the matching class rows,
        # one range of ix_classes_name_regions, instead of probing every image.
        return db.session.scalar(
            select(func.count(distinct(DefectClass.img_unique_id))).where(
                DefectClass.class_name == class_name, DefectClass.total_regions > 0
            )
        )
    return db.session.scalar(
        images_first(select(func.count()).select_from(Image)).where(*conditions)
    )


def images_first(query):
    """MySQL/MariaDB only (other dialects render nothing): join in the written order,
    images first, so a page walks idx_timestamp in order and stops after `limit` rows.
    Left to itself the optimizer, which costs join orders without the LIMIT, may
    start from a classes index instead (for the history class filter a LooseScan over
    every class row), then sort every match."""
    return query.prefix_with("STRAIGHT_JOIN", dialect="mysql")


# ---- region search -------------------------------------------------------------------


def region_query(window, filters):
    """Region rows joined with their class and image, filtered."""
    query = (
        select(
            Region,
            DefectClass.class_name,
            DefectClass.class_id,
            Image.timestamp,
            Image.batch_id,
            Image.original_filename,
        )
        .join(DefectClass, Region.class_unique_id == DefectClass.class_unique_id)
        .join(Image, Region.img_unique_id == Image.img_unique_id)
        .where(*region_image_conditions(window, filters))
    )
    if filters.get("class_name"):
        query = query.where(DefectClass.class_name == filters["class_name"])
    return query.where(*region_conditions(filters))


def region_image_conditions(window, filters):
    conditions = window.conditions(Image.timestamp) + trace_conditions(filters)
    if filters.get("batch_id"):
        conditions.append(Image.batch_id == filters["batch_id"])
    return conditions


def region_conditions(filters):
    conditions = disposition_conditions(filters.get("disposition"))
    if filters.get("img_unique_id"):
        conditions.append(Region.img_unique_id == filters["img_unique_id"])
    for name, column in REGION_RANGES.items():
        low, high = filters.get(f"min_{name}"), filters.get(f"max_{name}")
        if low is not None:
            conditions.append(column >= low)
        if high is not None:
            conditions.append(column <= high)
    return conditions


def count_regions(query):
    return db.session.scalar(select(func.count()).select_from(query.subquery()))


def count_matching_regions(window, filters):
    """The number of rows region_query(window, filters) returns, joining only the
    tables a filter needs (see the module docstring)."""
    query = select(func.count()).select_from(Region)
    if filters.get("class_name"):
        query = query.join(
            DefectClass, Region.class_unique_id == DefectClass.class_unique_id
        ).where(DefectClass.class_name == filters["class_name"])
    image_conditions = region_image_conditions(window, filters)
    if image_conditions:
        query = query.join(Image, Region.img_unique_id == Image.img_unique_id).where(
            *image_conditions
        )
    return db.session.scalar(query.where(*region_conditions(filters)))


def search_regions(window, filters, *, sort, page, limit):
    total = count_matching_regions(window, filters)
    offset = (page - 1) * limit
    if total <= offset:
        return total, []
    query = region_query(window, filters)
    if sort in ("newest", "oldest") and total > offset + limit and total >= TIME_CUT_MIN_ROWS:
        query = query.where(*time_cut(window, filters, sort, offset + limit))
    rows = db.session.execute(query.order_by(*REGION_SORTS[sort]).offset(offset).limit(limit)).all()
    return total, rows


def time_cut(window, filters, sort, rows):
    """Conditions that keep the first `rows` rows of region_query(window, filters) in
    `sort` order (and any others with the same timestamp): a bound at the timestamp
    of the last of them. The final sort (by timestamp, then region id: two tables, so
    no index gives that order) then sorts about a page's worth of rows, not every match.

    The bound is read walking idx_timestamp in order from images (images_first): with
    at least TIME_CUT_MIN_ROWS matches the walk soon meets `rows` of them, while the
    plan the optimizer picks by itself for a class filter (costed without the LIMIT)
    sorts every match. Classes are joined only for a class filter (module docstring)."""
    newest = sort == "newest"
    query = (
        images_first(select(Image.timestamp))
        .join(Region, Region.img_unique_id == Image.img_unique_id)
        .where(*region_image_conditions(window, filters), *region_conditions(filters))
    )
    if filters.get("class_name"):
        query = query.join(
            DefectClass, Region.class_unique_id == DefectClass.class_unique_id
        ).where(DefectClass.class_name == filters["class_name"])
    edge = db.session.scalar(
        query.order_by(Image.timestamp.desc() if newest else Image.timestamp.asc())
        .offset(rows - 1)
        .limit(1)
    )
    if edge is None:  # rows deleted since they were counted: no cut
        return []
    return [Image.timestamp >= edge if newest else Image.timestamp <= edge]


def stream_regions(window, filters, *, sort, page=None, limit=None):
    """Rows for CSV export, fetched in chunks so memory stays flat."""
    query = region_query(window, filters).order_by(*REGION_SORTS[sort])
    if limit is not None:
        query = query.offset(((page or 1) - 1) * limit).limit(limit)
    yield from db.session.execute(query.execution_options(yield_per=1000))


# ---- statistics -------------------------------------------------------------------------


def statistics(window, trace=None):
    traced = trace_conditions(trace or {})
    conditions = window.conditions(Image.timestamp) + traced
    totals = db.session.execute(
        select(
            func.count(),
            func.sum(Image.total_defects),
            func.avg(Image.processing_time_seconds),
            func.min(Image.processing_time_seconds),
            func.max(Image.processing_time_seconds),
            func.min(Image.timestamp),
            func.max(Image.timestamp),
            func.sum(Image.stored_bytes),
        ).where(*conditions)
    ).one()
    return {
        "totals": {
            "images": totals[0],
            "regions": int(totals[1] or 0),
            "batches": batch_count(window, conditions if traced else None),
        },
        "processing_time": {"mean": totals[2], "min": totals[3], "max": totals[4]},
        "date_range": {"first": totals[5], "last": totals[6]},
        "storage": {"bytes_used": int(totals[7] or 0)},
        "classes": class_statistics(window, traced),
        "daily": daily_counts(conditions),
    }


def batch_count(window, image_filter=None):
    if image_filter is not None:  # traceability filters: the batches of matching images
        return db.session.scalar(select(func.count(distinct(Image.batch_id))).where(*image_filter))
    return db.session.scalar(
        select(func.count()).select_from(Batch).where(*window.conditions(Batch.created_at))
    )


def class_statistics(window, extra_conditions=()):
    query = select(
        DefectClass.class_id,
        DefectClass.class_name,
        func.sum(case((DefectClass.total_regions > 0, 1), else_=0)),
        func.sum(DefectClass.total_regions),
        func.sum(DefectClass.total_area_pixels),
    ).group_by(DefectClass.class_id, DefectClass.class_name)
    window_conditions = window.conditions(Image.timestamp) + list(extra_conditions)
    if window_conditions:
        query = query.join(Image, DefectClass.img_unique_id == Image.img_unique_id).where(
            and_(*window_conditions)
        )
    rows = db.session.execute(query.order_by(DefectClass.class_id)).all()
    found = {row[0]: row for row in rows}
    # Every class, with zeros when the window holds none: one shape, windowed or not.
    for class_id, name in CLASS_NAMES.items():
        found.setdefault(class_id, (class_id, name, 0, 0, 0))
    return [
        {
            "class_id": class_id,
            "class_name": name,
            "images": int(images or 0),
            "regions": int(regions or 0),
            "area_pixels": int(area or 0),
        }
        for class_id, name, images, regions, area in (found[key] for key in sorted(found))
    ]


def daily_counts(conditions):
    day = func.date(Image.timestamp)
    rows = db.session.execute(
        select(day, func.count(), func.sum(Image.total_defects))
        .where(*conditions)
        .group_by(day)
        .order_by(day)
    ).all()
    return [
        {"date": str(date)[:10], "images": images, "defects": int(defects or 0)}
        for date, images, defects in rows
    ]
