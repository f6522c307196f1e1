"""Reading history: image lists, region search and statistics, fast at millions of rows.

The design (issue #12; the indexes are declared in models.py, the derived data is kept
by services/derived.py):

- Region search reads `regions` alone: the class id and the image's timestamp and batch
  are copied onto each region, and one index per sort key, (class_id, sort key,
  region_unique_id, the other filter columns), gives the page order with every filter
  checked inside the index. Without a class filter the four classes are read as four
  ordered streams and merged, so a page never sorts more than its own rows.
- Pages: `page` (an offset) or `cursor` (opaque keyset position: the sort key of the
  last row); both answer the same rows, a cursor costs the same at any depth.
- Totals: history totals are exact (per-day rollups for whole days, the rows of the
  partial days at the window's edges); region totals count at most COUNT_CAP matches
  and beyond that say `total_is_lower_bound`.
- /stats adds the rollups of the whole days in the window to the rows of its edges.
- Traceability filters (issue #16) are exact matches on images: image lists and /stats
  with one read the image rows (the rollups hold no traceability values), region search
  takes the matching images as a subquery (one (field, timestamp) index each).

Every filter is a bound parameter through the ORM; filters are tables (IMAGE_FILTERS,
REGION_FILTERS) so a new one is one entry.
"""

import base64
import heapq
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import and_, case, distinct, exists, func, literal, or_, select
from sqlalchemy.orm import selectinload

from ..errors import ApiError
from ..extensions import db
from ..models import (
    CLASS_IDS,
    CLASS_NAMES,
    Batch,
    DefectClass,
    Image,
    Region,
    StatsDay,
    StatsDayClass,
)
from .derived import day_start, empty_day_totals
from .traceability import disposition_conditions, reviewed_condition, trace_conditions

# Sort name -> ((column, descending), ...): the last column makes the order total.
IMAGE_SORTS = {
    "newest": ((Image.timestamp, True), (Image.img_unique_id, True)),
    "oldest": ((Image.timestamp, False), (Image.img_unique_id, False)),
    "most_defects": (
        (Image.total_defects, True),
        (Image.timestamp, True),
        (Image.img_unique_id, True),
    ),
    "fewest_defects": (
        (Image.total_defects, False),
        (Image.timestamp, True),
        (Image.img_unique_id, True),
    ),
}
# Sort name -> (column, descending, index); ties go by region_unique_id, same direction.
REGION_SORTS = {
    "newest": (Region.image_timestamp, True, "ix_regions_class_time"),
    "oldest": (Region.image_timestamp, False, "ix_regions_class_time"),
    "area_desc": (Region.area_pixels, True, "ix_regions_class_area"),
    "area_asc": (Region.area_pixels, False, "ix_regions_class_area"),
    "circularity_desc": (Region.circularity, True, "ix_regions_class_circularity"),
    "circularity_asc": (Region.circularity, False, "ix_regions_class_circularity"),
    "aspect_ratio_desc": (Region.aspect_ratio, True, "ix_regions_class_aspect"),
    "aspect_ratio_asc": (Region.aspect_ratio, False, "ix_regions_class_aspect"),
}
REGION_FILTERS = {
    "batch_id": lambda value: Region.batch_id == value,
    "img_unique_id": lambda value: Region.img_unique_id == value,
    "min_area": lambda value: Region.area_pixels >= value,
    "max_area": lambda value: Region.area_pixels <= value,
    "min_circularity": lambda value: Region.circularity >= value,
    "max_circularity": lambda value: Region.circularity <= value,
    "min_aspect_ratio": lambda value: Region.aspect_ratio >= value,
    "max_aspect_ratio": lambda value: Region.aspect_ratio <= value,
}
# Filters that leave so few rows that the database's own plan (no forced index) is best.
NARROW_REGION_FILTERS = ("batch_id", "img_unique_id", "img_ids")
# Traceability filters matching at most this many images search those images' regions
# (idx_img_id); more, and the matching images are a subquery checked along the sort index.
FEW_TRACED_IMAGES = 500
IMAGE_FILTERS = {
    "batch_id": lambda value: Image.batch_id == value,
    "class_name": lambda value: exists().where(
        DefectClass.img_unique_id == Image.img_unique_id,
        DefectClass.class_name == value,
        DefectClass.total_regions > 0,
    ),
}
# Region totals above this are answered as a lower bound (`total_is_lower_bound`).
COUNT_CAP = 10_000
CSV_CHUNK = 1000


@dataclass
class Window:
    """An inclusive time window; a bare date as `end` means the whole day."""

    start: datetime | None = None
    end: datetime | None = None
    end_is_date: bool = False
    # Internal (edges of a window): the end itself excluded.
    end_exclusive: bool = False

    def conditions(self, column):
        conditions = []
        if self.start is not None:
            conditions.append(column >= self.start)
        if self.end is not None:
            if self.end_is_date:
                conditions.append(column < self.end + timedelta(days=1))
            elif self.end_exclusive:
                conditions.append(column < self.end)
            else:
                conditions.append(column <= self.end)
        return conditions

    def split(self):
        """(whole_days, edges): whole_days = (first, stop) UTC days first <= day < stop
        inside the window (None: unbounded, or no whole day at all); edges = the
        Windows of the remaining partial days."""
        if self.start is None:
            first = None
        elif self.start == day_start(self.start.date()):
            first = self.start.date()
        else:
            first = self.start.date() + timedelta(days=1)
        upper_edge = None
        if self.end is None:
            stop = None
        elif self.end_is_date:
            stop = self.end.date() + timedelta(days=1)
        else:
            stop = self.end.date()
            if self.end_exclusive and self.end == day_start(stop):
                upper_edge = None
            else:
                upper_edge = Window(day_start(stop), self.end, end_exclusive=self.end_exclusive)
        if first is not None and stop is not None and first >= stop:
            return None, [self]
        edges = []
        if first is not None and self.start != day_start(first):
            edges.append(Window(self.start, day_start(first), end_exclusive=True))
        if upper_edge is not None:
            edges.append(upper_edge)
        return (first, stop), edges


def day_conditions(column, days):
    first, stop = days
    conditions = []
    if first is not None:
        conditions.append(column >= first)
    if stop is not None:
        conditions.append(column < stop)
    return conditions


# ---- cursors ----------------------------------------------------------------------------


def encode_cursor(sort, values):
    """Opaque keyset position: the sort name and the sort key of the last row."""
    plain = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    text = json.dumps({"s": sort, "k": plain}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor, sort):
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = [datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in data["k"]]
        if data["s"] != sort:
            raise ValueError("sort")
        return values
    except (ValueError, KeyError, TypeError):
        problem = "not a cursor of this sort"
        raise ApiError.of(
            "INVALID_PARAMETER",
            fields=f"cursor: {problem}. Pass the `next_cursor` of the previous page "
            "unchanged, with the same sort (or use page).",
            details={"fields": {"cursor": [problem]}},
        ) from None


def after_key(columns, values):
    """Rows after `values` in the order of `columns` [(column, descending)]: the
    lexicographic comparison, written so the first column bounds an index range."""
    first, descending = columns[0]
    bound = first <= values[0] if descending else first >= values[0]
    alternatives = []
    for k, (column, desc) in enumerate(columns):
        equal = [c == v for (c, _), v in zip(columns[:k], values[:k], strict=False)]
        alternatives.append(and_(*equal, column < values[k] if desc else column > values[k]))
    return and_(bound, or_(*alternatives))


def ordering(columns):
    return [column.desc() if desc else column.asc() for column, desc in columns]


# ---- history ----------------------------------------------------------------------------


def image_conditions(window, class_name=None, batch_id=None, trace=None, reviewed=None):
    conditions = window.conditions(Image.timestamp)
    conditions += trace_conditions(trace or {}) + reviewed_condition(reviewed)
    for name, value in (("batch_id", batch_id), ("class_name", class_name)):
        if value:
            conditions.append(IMAGE_FILTERS[name](value))
    return conditions


def list_images(
    window, *, class_name, batch_id, sort, page, limit, cursor=None, trace=None, reviewed=None
):
    """(total, rows, next_cursor): one page of images."""
    conditions = image_conditions(window, class_name, batch_id, trace, reviewed)
    total = count_images(window, class_name, batch_id, trace, reviewed)
    columns = IMAGE_SORTS[sort]
    query = (
        images_first(select(Image))
        .where(*conditions)
        .options(selectinload(Image.classes))
        .order_by(*ordering(columns))
        .limit(limit + 1)
    )
    if cursor:
        query = query.where(after_key(columns, decode_cursor(cursor, sort)))
    else:
        if total <= (page - 1) * limit:
            return total, [], None
        query = query.offset((page - 1) * limit)
    rows = db.session.scalars(query).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(sort, [getattr(rows[-1], c.key) for c, _ in columns])
    return total, rows, next_cursor


def count_images(window, class_name, batch_id, trace=None, reviewed=None):
    """Exact: a batch is small enough to count, and so are the images of traceability
    values or a review mark (the rollups hold neither); otherwise the rollups of the
    whole days plus the image rows of the partial days at the window's edges."""
    if batch_id or trace or reviewed is not None:
        return db.session.scalar(
            images_first(select(func.count()).select_from(Image)).where(
                *image_conditions(window, class_name, batch_id, trace, reviewed)
            )
        )
    days, edges = window.split()
    total = 0
    if days is not None:
        if class_name:
            total += db.session.scalar(
                select(func.coalesce(func.sum(StatsDayClass.images), 0)).where(
                    StatsDayClass.class_name == class_name,
                    *day_conditions(StatsDayClass.day, days),
                )
            )
        else:
            total += db.session.scalar(
                select(func.coalesce(func.sum(StatsDay.images), 0)).where(
                    *day_conditions(StatsDay.day, days)
                )
            )
    for edge in edges:
        total += db.session.scalar(
            select(func.count()).select_from(Image).where(*image_conditions(edge, class_name))
        )
    return int(total)


def images_first(query):
    """MySQL/MariaDB only (other dialects render nothing): join in the written order,
    images first, so a page walks idx_timestamp in order and stops after `limit` rows.
    Left to itself the optimizer, which costs join orders without the LIMIT, may
    start from a classes index instead, then sort every match."""
    return query.prefix_with("STRAIGHT_JOIN", dialect="mysql")


# ---- region search -------------------------------------------------------------------


def class_ids(filters):
    name = filters.get("class_name")
    return [CLASS_IDS[name]] if name else list(CLASS_NAMES)


def class_term(class_id, filters):
    if filters.get("img_unique_id") or filters.get("img_ids"):
        # One image's regions: idx_img_id finds them; an expression keeps planners
        # (SQLite's, without statistics) from walking a class index instead.
        return func.coalesce(Region.class_id, 0) == class_id
    return Region.class_id == class_id


def region_conditions(window, filters):
    conditions = window.conditions(Region.image_timestamp)
    for name, build in REGION_FILTERS.items():
        if filters.get(name) is not None:
            conditions.append(build(filters[name]))
    if filters.get("img_ids") is not None:  # see traced_images
        conditions.append(Region.img_unique_id.in_(filters["img_ids"]))
    elif traced := trace_conditions(filters):
        # The regions of the matching images: a subquery on a (field, timestamp) index.
        conditions.append(Region.img_unique_id.in_(select(Image.img_unique_id).where(*traced)))
    return conditions + disposition_conditions(filters.get("disposition"))


def traced_images(window, filters):
    """With traceability filters that match few images (a lot, a wafer), those images'
    ids as the filter `img_ids`: their regions come by idx_img_id, where walking a sort
    index would pass over every region of the class. Otherwise `filters` unchanged."""
    traced = trace_conditions(filters)
    if not traced:
        return filters
    ids = db.session.scalars(
        select(Image.img_unique_id)
        .where(*traced, *window.conditions(Image.timestamp))
        .limit(FEW_TRACED_IMAGES + 1)
    ).all()
    return {**filters, "img_ids": ids} if len(ids) <= FEW_TRACED_IMAGES else filters


def count_matching_regions(window, filters, cap=None):
    """(total, is_lower_bound): exact up to `cap` matches; each class counts at most
    the matches still missing, so no count reads more than cap + 1 index entries."""
    cap = COUNT_CAP if cap is None else cap
    conditions = region_conditions(window, filters)
    total = 0
    for class_id in class_ids(filters):
        matches = (
            select(literal(1))
            .select_from(Region)
            .where(class_term(class_id, filters), *conditions)
            .limit(cap + 1 - total)
            .subquery()
        )
        total += db.session.scalar(select(func.count()).select_from(matches))
        if total > cap:
            return cap, True
    return total, False


def search_regions(window, filters, *, sort, page, limit, cursor=None):
    """(total, is_lower_bound, rows, next_cursor): one page of matching regions."""
    filters = traced_images(window, filters)
    total, bounded = count_matching_regions(window, filters)
    after = decode_cursor(cursor, sort) if cursor else None
    skip = 0 if cursor else (page - 1) * limit
    if not bounded and skip >= total:
        return total, bounded, [], None
    # Many matches: walk the sort's index in order (the page is among the first rows).
    # Few: the optimizer's own choice reads them through the narrowest index.
    forced = bounded and not any(filters.get(name) for name in NARROW_REGION_FILTERS)
    keys = page_keys(window, filters, sort, skip, limit + 1, after, forced)
    next_cursor = encode_cursor(sort, keys[limit - 1]) if len(keys) > limit else None
    return total, bounded, region_rows([rid for _, rid in keys[:limit]]), next_cursor


def page_keys(window, filters, sort, skip, take, after, forced=True):
    """[(sort value, region_unique_id)] of the rows skip..skip+take after `after`,
    merged from one ordered stream per class."""
    column, descending, index = REGION_SORTS[sort]
    key_columns = ((column, descending), (Region.region_unique_id, descending))
    conditions = region_conditions(window, filters)
    if after is not None:
        conditions.append(after_key(key_columns, after))
    order = ordering(key_columns)
    if any(filters.get(name) for name in NARROW_REGION_FILTERS):
        # Few rows: sort them, rather than walk a sort index (SQLite's planner prefers a
        # plan that needs no sort, even a walk over every region of the class).
        order = ordering(((func.coalesce(column, column), descending), key_columns[1]))
    streams = []
    for class_id in class_ids(filters):
        query = (
            select(column, Region.region_unique_id)
            .where(class_term(class_id, filters), *conditions)
            .order_by(*order)
            .limit(skip + take)
        )
        if forced:
            query = query.with_hint(Region, f"FORCE INDEX ({index})", "mysql")
        streams.append([tuple(row) for row in db.session.execute(query)])
    merged = heapq.merge(*streams, reverse=descending) if len(streams) > 1 else streams[0]
    return list(islice(merged, skip, skip + take))


def region_rows(region_ids):
    """Full rows (region, class name and id, image timestamp, batch, filename) of the
    given regions, in the given order: primary-key lookups."""
    if not region_ids:
        return []
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
        .where(Region.region_unique_id.in_(region_ids))
    )
    found = {row.Region.region_unique_id: row for row in db.session.execute(query)}
    return [found[rid] for rid in region_ids if rid in found]


def stream_regions(window, filters, *, sort, page=None, limit=None):
    """Rows for CSV export, read by keyset in chunks so memory stays flat and the first
    rows go out at once; with page/limit only that page."""
    filters = traced_images(window, filters)
    remaining = limit
    skip = ((page or 1) - 1) * limit if limit is not None else 0
    after = None
    while remaining is None or remaining > 0:
        take = CSV_CHUNK if remaining is None else min(CSV_CHUNK, remaining)
        keys = page_keys(window, filters, sort, skip, take, after, forced=False)
        if not keys:
            return
        for row in region_rows([rid for _, rid in keys]):
            yield row
            db.session.expunge(row.Region)  # written out: keep the session small
        after, skip = keys[-1], 0
        if remaining is not None:
            remaining -= len(keys)
        if len(keys) < take:
            return


# ---- statistics -------------------------------------------------------------------------


def statistics(window, trace=None):
    traced = trace_conditions(trace or {})
    # Traceability filters: the rollups hold no such values, so every row is read.
    days, edges = (None, [window]) if traced else window.split()
    totals = empty_day_totals()
    if days is not None:
        merge_totals(totals, rollup_totals(days))
    for edge in edges:
        merge_totals(totals, raw_totals(edge, traced))
    images = totals["images"]
    return {
        "totals": {
            "images": images,
            "regions": int(totals["defects"]),
            "batches": batch_count(window, traced),
        },
        "processing_time": {
            "mean": totals["processing_sum"] / images if images else None,
            "min": totals["processing_min"],
            "max": totals["processing_max"],
        },
        "date_range": {"first": totals["first_at"], "last": totals["last_at"]},
        "storage": {"bytes_used": int(totals["stored_bytes"])},
        "classes": class_statistics(days, edges, traced),
        "daily": daily_counts(days, edges, traced),
    }


TOTAL_KEYS = (
    "images",
    "defects",
    "processing_sum",
    "processing_min",
    "processing_max",
    "stored_bytes",
    "first_at",
    "last_at",
)


def rollup_totals(days):
    return db.session.execute(
        select(
            func.coalesce(func.sum(StatsDay.images), 0),
            func.coalesce(func.sum(StatsDay.defects), 0),
            func.coalesce(func.sum(StatsDay.processing_sum), 0),
            func.min(StatsDay.processing_min),
            func.max(StatsDay.processing_max),
            func.coalesce(func.sum(StatsDay.stored_bytes), 0),
            func.min(StatsDay.first_at),
            func.max(StatsDay.last_at),
        ).where(*day_conditions(StatsDay.day, days))
    ).one()


def raw_totals(window, traced=()):
    return db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Image.total_defects), 0),
            func.coalesce(func.sum(Image.processing_time_seconds), 0),
            func.min(Image.processing_time_seconds),
            func.max(Image.processing_time_seconds),
            func.coalesce(func.sum(Image.stored_bytes), 0),
            func.min(Image.timestamp),
            func.max(Image.timestamp),
        ).where(*window.conditions(Image.timestamp), *traced)
    ).one()


def merge_totals(totals, row):
    values = dict(zip(TOTAL_KEYS, row, strict=True))
    # MariaDB answers SUM() of integers as Decimal.
    for key, kind in (("images", int), ("defects", int), ("processing_sum", float)):
        totals[key] += kind(values[key] or 0)
    totals["stored_bytes"] += int(values["stored_bytes"] or 0)
    for key, pick in (
        ("processing_min", min),
        ("processing_max", max),
        ("first_at", min),
        ("last_at", max),
    ):
        if values[key] is not None:
            totals[key] = values[key] if totals[key] is None else pick(totals[key], values[key])


def batch_count(window, traced=()):
    if traced:  # traceability filters: the batches of the matching images
        return db.session.scalar(
            select(func.count(distinct(Image.batch_id))).where(
                *window.conditions(Image.timestamp), *traced
            )
        )
    return db.session.scalar(
        select(func.count()).select_from(Batch).where(*window.conditions(Batch.created_at))
    )


def class_statistics(days, edges, traced=()):
    sums = {}
    parts = []
    if days is not None:
        parts.append(
            select(
                StatsDayClass.class_id,
                StatsDayClass.class_name,
                func.sum(StatsDayClass.images),
                func.sum(StatsDayClass.regions),
                func.sum(StatsDayClass.area_pixels),
            )
            .where(*day_conditions(StatsDayClass.day, days))
            .group_by(StatsDayClass.class_id, StatsDayClass.class_name)
        )
    for edge in edges:
        parts.append(
            select(
                DefectClass.class_id,
                DefectClass.class_name,
                func.sum(case((DefectClass.total_regions > 0, 1), else_=0)),
                func.sum(DefectClass.total_regions),
                func.sum(DefectClass.total_area_pixels),
            )
            .join(Image, DefectClass.img_unique_id == Image.img_unique_id)
            .where(*edge.conditions(Image.timestamp), *traced)
            .group_by(DefectClass.class_id, DefectClass.class_name)
        )
    for query in parts:
        for class_id, name, images, regions, area in db.session.execute(query):
            entry = sums.setdefault((class_id, name), [0, 0, 0])
            for i, value in enumerate((images, regions, area)):
                entry[i] += int(value or 0)
    # Every class, with zeros when the window holds none: one shape, windowed or not.
    for class_id, name in CLASS_NAMES.items():
        if not any(key[0] == class_id for key in sums):
            sums[(class_id, name)] = [0, 0, 0]
    return [
        {
            "class_id": class_id,
            "class_name": name,
            "images": images,
            "regions": regions,
            "area_pixels": area,
        }
        for (class_id, name), (images, regions, area) in sorted(sums.items())
    ]


def daily_counts(days, edges, traced=()):
    counts = {}
    if days is not None:
        rows = db.session.execute(
            select(StatsDay.day, StatsDay.images, StatsDay.defects).where(
                *day_conditions(StatsDay.day, days), StatsDay.images > 0
            )
        )
        for day, images, defects in rows:
            counts[str(day)[:10]] = [int(images), int(defects or 0)]
    day = func.date(Image.timestamp)
    for edge in edges:
        rows = db.session.execute(
            select(day, func.count(), func.sum(Image.total_defects))
            .where(*edge.conditions(Image.timestamp), *traced)
            .group_by(day)
        )
        for date, images, defects in rows:
            entry = counts.setdefault(str(date)[:10], [0, 0])
            entry[0] += int(images)
            entry[1] += int(defects or 0)
    return [
        {"date": date, "images": images, "defects": defects}
        for date, (images, defects) in sorted(counts.items())
    ]
