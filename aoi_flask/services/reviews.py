"""Defect review (issue #16): dispositions per region, the image's reviewed mark,
the append-only review log, and the statistics reviews imply.

The model's rows (classes, regions) are never written here: a reviewer's verdict
lives in region_reviews beside them, and every change adds a review_log row in
the same transaction as the change itself.
"""

import json
from collections import Counter, defaultdict

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..extensions import db
from ..models import TRACE_FIELDS, DefectClass, Image, Region, RegionReview, ReviewLogEntry
from .results import commit_or_raise, get_image
from .storage import utc_now
from .traceability import trace_conditions

REVIEW_VALUES = ("disposition", "reviewer_class_name", "comment")
VERDICTS = ("true_defect", "false_call", "nuisance")
FALSE_CALL_COLUMN = "false_call"  # the confusion table's column for "not a defect"


def review_values(review):
    if review is None:
        return {"disposition": "unreviewed", "reviewer_class_name": None, "comment": None}
    return {name: getattr(review, name) for name in REVIEW_VALUES}


# ---- writing ---------------------------------------------------------------------------


def set_region_review(img_id, region_id, values, reviewer):
    """Set one region's disposition; returns its RegionReview."""
    return review_image(img_id, [{"region_unique_id": region_id, **values}], None, reviewer)[0][0]


def review_image(img_id, items, reviewed, reviewer):
    """Set several dispositions and/or the image's reviewed mark in one transaction.
    Returns ([RegionReview per item], number of log entries written)."""
    image = get_image(img_id)
    ids = [item["region_unique_id"] for item in items]
    regions = check_regions(img_id, ids)
    try:
        return apply_reviews(image, regions, items, reviewed, reviewer)
    except IntegrityError:
        # Another reviewer created one of these review rows at the same moment: read
        # it and apply this change on top, so the log's old value is the true one.
        db.session.rollback()
        image = get_image(img_id)
        return apply_reviews(image, check_regions(img_id, ids), items, reviewed, reviewer)


def check_regions(img_id, ids):
    if not ids:
        return {}
    found = {
        region.region_unique_id: region
        for region in db.session.scalars(
            select(Region).where(Region.img_unique_id == img_id, Region.region_unique_id.in_(ids))
        )
    }
    missing = [region_id for region_id in ids if region_id not in found]
    if missing:
        more = " …" if len(missing) > 5 else ""
        raise ApiError.of(
            "REGION_NOT_FOUND",
            img_id=img_id,
            regions=", ".join(map(repr, missing[:5])) + more,
            details={"missing": missing},
        )
    return found


def apply_reviews(image, regions, items, reviewed, reviewer):
    moment = utc_now()
    # Locked: two reviewers changing one region log each other's value as the old one.
    existing = {
        review.region_unique_id: review
        for review in db.session.scalars(
            select(RegionReview)
            .where(RegionReview.region_unique_id.in_(list(regions)))
            .with_for_update()
        )
    }
    results, logged = [], 0
    for item in items:
        region_id = item["region_unique_id"]
        review = existing.get(region_id)
        old = review_values(review)
        new = {name: item.get(name) for name in REVIEW_VALUES}
        if old == new:
            results.append(review)
            continue
        if review is None:
            review = RegionReview(region_unique_id=region_id, img_unique_id=image.img_unique_id)
            db.session.add(review)
            existing[region_id] = review
        for name, value in new.items():
            setattr(review, name, value)
        review.reviewed_by, review.reviewed_at = reviewer, moment
        db.session.add(log_entry(image.img_unique_id, region_id, reviewer, moment, old, new))
        logged += 1
        results.append(review)
    if reviewed is not None and reviewed != (image.reviewed_at is not None):
        old = {"reviewed": image.reviewed_at is not None, "reviewed_by": image.reviewed_by}
        image.reviewed_at, image.reviewed_by = (moment, reviewer) if reviewed else (None, None)
        new = {"reviewed": reviewed, "reviewed_by": image.reviewed_by}
        db.session.add(log_entry(image.img_unique_id, None, reviewer, moment, old, new))
        logged += 1
    if logged:
        db.session.flush()  # a concurrent insert of the same review row raises here
    commit_or_raise()
    return results, logged


def log_entry(img_id, region_id, reviewer, moment, old, new):
    return ReviewLogEntry(
        img_unique_id=img_id,
        region_unique_id=region_id,
        changed_by=reviewer,
        changed_at=moment,
        old_value=json.dumps(old, ensure_ascii=False),
        new_value=json.dumps(new, ensure_ascii=False),
    )


# ---- reading ---------------------------------------------------------------------------


def review_log(img_id):
    get_image(img_id)
    return db.session.scalars(
        select(ReviewLogEntry)
        .where(ReviewLogEntry.img_unique_id == img_id)
        .order_by(ReviewLogEntry.id)
    ).all()


def reviews_by_region(region_ids):
    """Review rows of these regions (one query), keyed by region id."""
    if not region_ids:
        return {}
    return {
        review.region_unique_id: review
        for review in db.session.scalars(
            select(RegionReview).where(RegionReview.region_unique_id.in_(list(region_ids)))
        )
    }


def reviews_of_image(img_id):
    return {
        review.region_unique_id: review
        for review in db.session.scalars(
            select(RegionReview).where(RegionReview.img_unique_id == img_id)
        )
    }


def review_progress(img_id, total_regions):
    """Regions of one image with a disposition other than unreviewed."""
    reviewed = db.session.scalar(
        select(func.count())
        .select_from(RegionReview)
        .where(RegionReview.img_unique_id == img_id, RegionReview.disposition != "unreviewed")
    )
    return {"regions": total_regions, "reviewed": reviewed}


def traces_by_image(img_ids):
    """Traceability values of these images (one query), keyed by image id."""
    if not img_ids:
        return {}
    columns = [getattr(Image, name) for name in TRACE_FIELDS]
    rows = db.session.execute(
        select(Image.img_unique_id, *columns).where(Image.img_unique_id.in_(list(img_ids)))
    )
    return {row[0]: dict(zip(TRACE_FIELDS, row[1:], strict=True)) for row in rows}


def annotated(rows, chunk=1000):
    """Region-search rows with their image's traceability values and their review:
    (row, trace, review) triples, looked up a chunk at a time (memory stays flat)."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            yield from annotate_chunk(batch)
            batch = []
    if batch:
        yield from annotate_chunk(batch)


def annotate_chunk(rows):
    traces = traces_by_image({row.Region.img_unique_id for row in rows})
    reviews = reviews_by_region([row.Region.region_unique_id for row in rows])
    for row in rows:
        region = row.Region
        yield row, traces.get(region.img_unique_id, {}), reviews.get(region.region_unique_id)


# ---- statistics ---------------------------------------------------------------------------


def reviewed_rows(columns, conditions):
    """Reviewed regions (disposition set) joined with their class and image."""
    return (
        select(*columns, RegionReview.disposition, func.count())
        .select_from(RegionReview)
        .join(Region, RegionReview.region_unique_id == Region.region_unique_id)
        .join(DefectClass, Region.class_unique_id == DefectClass.class_unique_id)
        .join(Image, RegionReview.img_unique_id == Image.img_unique_id)
        .where(RegionReview.disposition != "unreviewed", *conditions)
        .group_by(*columns, RegionReview.disposition)
    )


def rates(counts):
    reviewed = sum(counts.get(name, 0) for name in VERDICTS)
    return {
        "reviewed_regions": reviewed,
        **{name: counts.get(name, 0) for name in VERDICTS},
        "false_call_rate": round(counts.get("false_call", 0) / reviewed, 4) if reviewed else None,
        "nuisance_rate": round(counts.get("nuisance", 0) / reviewed, 4) if reviewed else None,
    }


def rates_by(column, name, conditions):
    counts = defaultdict(Counter)
    for key, disposition, number in db.session.execute(reviewed_rows([column], conditions)):
        counts[key][disposition] += number
    return [{name: key, **rates(counts[key])} for key in sorted(counts, key=sort_key)]


def sort_key(value):
    return (value is None, str(value))


def review_statistics(window, trace=None):
    """How the reviews judge the model: per class, tool, model and day, plus the
    confusion table model class → reviewer class."""
    conditions = window.conditions(Image.timestamp) + trace_conditions(trace or {})
    totals = Counter()
    for disposition, number in db.session.execute(reviewed_rows([], conditions)):
        totals[disposition] += number
    day = func.date(Image.timestamp)
    daily = rates_by(day, "date", conditions)
    for row in daily:
        row["date"] = str(row["date"])[:10]
    return {
        "totals": rates(totals),
        "by_class": rates_by(DefectClass.class_name, "class_name", conditions),
        "by_tool": rates_by(Image.tool_id, "tool_id", conditions),
        "by_model": rates_by(Image.model_name, "model", conditions),
        "confusion": confusion(conditions),
        "daily": daily,
    }


def confusion(conditions):
    """Counts of reviewed regions by (model class, reviewer class). The reviewer class
    is the corrected class when given, else the model's; false calls count under
    `false_call`."""
    reviewer_class = case(
        (RegionReview.disposition == "false_call", FALSE_CALL_COLUMN),
        else_=func.coalesce(RegionReview.reviewer_class_name, DefectClass.class_name),
    )
    rows = db.session.execute(
        select(DefectClass.class_name, reviewer_class, func.count())
        .select_from(RegionReview)
        .join(Region, RegionReview.region_unique_id == Region.region_unique_id)
        .join(DefectClass, Region.class_unique_id == DefectClass.class_unique_id)
        .join(Image, RegionReview.img_unique_id == Image.img_unique_id)
        .where(RegionReview.disposition != "unreviewed", *conditions)
        .group_by(DefectClass.class_name, reviewer_class)
    ).all()
    return [
        {"model_class": model, "reviewer_class": reviewer, "regions": number}
        for model, reviewer, number in sorted(rows, key=lambda row: (row[0], row[1]))
    ]


def grouped_statistics(window, trace, field):
    """Totals and review rates per value of one traceability field."""
    column = getattr(Image, field)
    conditions = window.conditions(Image.timestamp) + trace_conditions(trace or {})
    images = {
        key: (number, int(defects or 0))
        for key, number, defects in db.session.execute(
            select(column, func.count(), func.sum(Image.total_defects))
            .where(*conditions)
            .group_by(column)
        )
    }
    reviewed = {row[field]: row for row in rates_by(column, field, conditions)}
    return [
        {
            field: key,
            "images": images[key][0],
            "regions": images[key][1],
            **{k: v for k, v in reviewed.get(key, rates({})).items() if k != field},
        }
        for key in sorted(images, key=sort_key)
    ]
