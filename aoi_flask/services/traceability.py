"""Filter conditions for traceability metadata and review dispositions (issue #16).

Kept apart from queries.py so that every query builder adds them the same way:
traceability values are exact matches on images (each has a (field, timestamp)
index); a disposition is checked against region_reviews, where a region without
a row counts as `unreviewed`.
"""

from sqlalchemy import exists

from ..models import TRACE_FIELDS, Image, Region, RegionReview


def trace_conditions(filters):
    """Image conditions for the traceability values in `filters` (a dict)."""
    return [getattr(Image, name) == filters[name] for name in TRACE_FIELDS if filters.get(name)]


def reviewed_condition(reviewed):
    if reviewed is None:
        return []
    return [Image.reviewed_at.is_not(None) if reviewed else Image.reviewed_at.is_(None)]


def disposition_conditions(disposition):
    """Region conditions: its review row has this disposition (or, for `unreviewed`,
    it has none with another)."""
    if not disposition:
        return []
    if disposition == "unreviewed":
        return [
            ~exists().where(
                RegionReview.region_unique_id == Region.region_unique_id,
                RegionReview.disposition != "unreviewed",
            )
        ]
    return [
        exists().where(
            RegionReview.region_unique_id == Region.region_unique_id,
            RegionReview.disposition == disposition,
        )
    ]
