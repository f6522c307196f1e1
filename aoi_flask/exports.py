"""CSV of region rows, shared by GET /query/defects?format=csv and the batch ZIP."""

import csv
import io

from .models import TRACE_FIELDS
from .schemas import utc_text

REGION_CSV_COLUMNS = (
    "region_unique_id",
    "img_unique_id",
    "filename",
    "batch_id",
    "timestamp",
    "class_id",
    "class_name",
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
    # Traceability and review (issue #16), after the reference columns.
    *TRACE_FIELDS,
    "disposition",
    "reviewer_class_name",
    "review_comment",
)
CHUNK = 64 * 1024


def csv_values(row, trace, review):
    region = row.Region
    extra = {
        "filename": row.original_filename,
        "batch_id": row.batch_id,
        "timestamp": utc_text(row.timestamp),
        "class_id": row.class_id,
        "class_name": row.class_name,
        **{name: trace.get(name) for name in TRACE_FIELDS},
        "disposition": review.disposition if review else "unreviewed",
        "reviewer_class_name": review.reviewer_class_name if review else None,
        "review_comment": review.comment if review else None,
    }
    # str(float) is the shortest repr that reads back to the same double.
    return [extra[c] if c in extra else getattr(region, c) for c in REGION_CSV_COLUMNS]


def region_csv_chunks(rows):
    """UTF-8 CSV in chunks of about 64 KiB, header first. rows: (row, trace, review)
    triples (services.reviews.annotated)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REGION_CSV_COLUMNS)
    for row in rows:
        writer.writerow(csv_values(*row))
        if buffer.tell() >= CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")
