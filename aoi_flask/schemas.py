"""Marshmallow schemas: they validate every input and shape every response."""

import difflib
from datetime import UTC, datetime, timedelta

from flask import url_for
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from .errors import ApiError
from .models import CLASS_NAMES
from .security import signed_url
from .services.queries import IMAGE_SORTS, REGION_SORTS, Window

DOWNLOAD_TYPES = ("input", "combined", "mask", "overlay", "thumbnail")
CLASS_CHOICES = tuple(CLASS_NAMES.values())


def utc_text(value):
    """A naive UTC datetime from the database as ISO 8601 with `Z`."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


class UtcDateTime(fields.DateTime):
    def _serialize(self, value, attr, obj, **kwargs):
        return utc_text(value)


def load_or_400(schema, data):
    """Validate input; a failure names each field and what it accepts."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields_text = "; ".join(
            f"{name}: {' '.join(messages) if isinstance(messages, list) else messages}"
            for name, messages in exc.messages.items()
        )
        raise ApiError(
            f"Invalid request parameters — {fields_text}",
            code="INVALID_PARAMETER",
            details={"fields": exc.messages},
        ) from None


def load_query_or_400(schema, args):
    """Query parameters of a GET: an unknown one (a typo such as `clas_name`) would be
    ignored and the answer would cover everything, so it is refused with a 400 that
    names it and the allowed ones."""
    allowed = sorted(field.data_key or name for name, field in schema.load_fields.items())
    unknown = [name for name in args if name not in allowed]
    if unknown:
        hints = [
            f"did you mean {match[0]}?"
            for match in (difflib.get_close_matches(name, allowed, n=1) for name in unknown)
            if match
        ]
        raise ApiError(
            f"Unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(name) for name in unknown)}"
            f"{' (' + ' '.join(hints) + ')' if hints else ''}. This endpoint accepts: "
            f"{', '.join(allowed)}. Fix the spelling or leave the parameter out.",
            code="INVALID_PARAMETER",
            details={"unknown": unknown, "allowed": allowed},
        )
    return load_or_400(schema, args)


class StrictSchema(Schema):
    class Meta:
        unknown = EXCLUDE


# ---- inputs -------------------------------------------------------------------


class UploadOptionsSchema(StrictSchema):
    include_images = fields.Boolean(load_default=False)


class RegionFilterSchema(StrictSchema):
    class_name = fields.String(
        load_default=None,
        validate=validate.OneOf(CLASS_CHOICES, error="must be one of {choices}"),
    )


class DownloadTypeSchema(StrictSchema):
    type = fields.String(
        required=True, validate=validate.OneOf(DOWNLOAD_TYPES, error="must be one of {choices}")
    )


class SignedLinkSchema(StrictSchema):
    """A download's query: only a signed link's parameters (checked by security)."""

    expires = fields.String(load_default=None)
    signature = fields.String(load_default=None)


# ---- outputs ------------------------------------------------------------------


def external(endpoint, **values):
    """An absolute URL; download URLs are signed while API keys are configured."""
    return signed_url(endpoint, url_for(endpoint, _external=True, **values))


def image_urls(image):
    img_id = image.img_unique_id
    return {
        kind: external("download.download_image", img_id=img_id, kind=kind)
        for kind in ("input", "combined", "mask", "overlay", "thumbnail")
    }


def defect_classes(image):
    return {c.class_name: c.total_regions for c in image.classes if c.total_regions}


class ClassRowSchema(Schema):
    class_unique_id = fields.String()
    class_id = fields.Integer()
    class_name = fields.String()
    total_regions = fields.Integer()
    total_area_pixels = fields.Integer()


class ImageResultSchema(Schema):
    """The single-upload answer (PRD Example 1), also the per-file batch result."""

    success = fields.Constant(True)
    img_unique_id = fields.String()
    filename = fields.String(attribute="original_filename")
    timestamp = UtcDateTime()
    processing_time_seconds = fields.Float()
    total_defects = fields.Integer()
    defect_classes = fields.Function(defect_classes)
    image_width = fields.Integer()
    image_height = fields.Integer()
    model = fields.String(attribute="model_name", allow_none=True)
    batch_id = fields.String(allow_none=True)
    images = fields.Function(image_urls)
    json_url = fields.Function(
        lambda image: external("download.download_json", img_id=image.img_unique_id)
    )


class ImageDetailSchema(ImageResultSchema):
    created_at = UtcDateTime()
    input_image_path = fields.String()
    result_image_1_path = fields.String()
    result_image_2_path = fields.String()
    result_image_3_path = fields.String()
    analysis_json_path = fields.String()
    thumbnail_path = fields.String()
    # Set when retention deleted the files (downloads answer 410) or fsck found them gone.
    purged_at = UtcDateTime(allow_none=True)
    files_missing_at = UtcDateTime(allow_none=True)
    classes = fields.List(fields.Nested(ClassRowSchema))


class CentroidSchema(Schema):
    x = fields.Float(attribute="centroid_x")
    y = fields.Float(attribute="centroid_y")


class BoundingBoxSchema(Schema):
    x = fields.Integer(attribute="bbox_x")
    y = fields.Integer(attribute="bbox_y")
    width = fields.Integer(attribute="bbox_width")
    height = fields.Integer(attribute="bbox_height")


class RegionSchema(Schema):
    region_unique_id = fields.String()
    region_id = fields.Integer()
    centroid = fields.Function(lambda region: CentroidSchema().dump(region))
    bounding_box = fields.Function(lambda region: BoundingBoxSchema().dump(region))
    area_pixels = fields.Integer()
    perimeter = fields.Float()
    major_axis = fields.Float()
    minor_axis = fields.Float()
    circularity = fields.Float()
    aspect_ratio = fields.Float()


class ClassRegionsSchema(ClassRowSchema):
    regions = fields.List(fields.Nested(RegionSchema))


def dump_regions(img_id, classes):
    """PRD Example 3: regions grouped by class."""
    return {
        "success": True,
        "img_unique_id": img_id,
        "total_regions": sum(c.total_regions for c in classes),
        "classes": ClassRegionsSchema(many=True).dump(classes),
    }


# ---- batches ----------------------------------------------------------------------


class BatchOptionsSchema(StrictSchema):
    async_ = fields.Boolean(data_key="async", load_default=False)


class PageSchema(StrictSchema):
    # Bounded so the row offset always fits the database's integers.
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(
            min=1, max=1_000_000, error="must be a whole number from 1 to 1000000"
        ),
    )
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=500, error="must be a whole number from 1 to 500"),
    )


def pages(total, limit):
    return max(1, -(-total // limit))


class BatchFileSchema(Schema):
    file_index = fields.Integer()
    filename = fields.String()
    state = fields.String()
    success = fields.Function(lambda item: item.state == "done")
    img_unique_id = fields.Function(
        lambda item: item.img_unique_id if item.state == "done" else None
    )
    error = fields.String(attribute="error_message", allow_none=True)
    code = fields.String(attribute="error_code", allow_none=True)
    attempts = fields.Integer()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)


def batch_links(batch_id):
    return {
        "status_url": external("batches.get_batch", batch_id=batch_id),
        "download_url": external("download.download_batch", batch_id=batch_id),
    }


# ---- history, region search, statistics -----------------------------------------------


class DateOrDateTime(fields.Field):
    """`2026-02-24` or an ISO 8601 datetime; datetimes with an offset become UTC."""

    default_error_messages = {
        "invalid": "must be a date (YYYY-MM-DD) or an ISO 8601 datetime (2026-02-24T10:30:00Z)",
        "range": "must be between 1900-01-01 and 9998-12-31",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).strip()
        is_date = len(text) == 10
        try:
            if is_date:
                moment = datetime.strptime(text, "%Y-%m-%d")
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
        except (ValueError, OverflowError):
            raise self.make_error("invalid") from None
        if not 1900 <= moment.year <= 9998:  # room for the day a bare end date adds
            raise self.make_error("range")
        return moment, is_date


class WindowSchema(StrictSchema):
    start_date = DateOrDateTime(load_default=None)
    end_date = DateOrDateTime(load_default=None)

    @validates_schema
    def start_before_end(self, data, **kwargs):
        start, end = data.get("start_date"), data.get("end_date")
        if start and end:
            # A bare end date stands for the whole day.
            end_bound = end[0] + timedelta(days=1) if end[1] else end[0]
            if start[0] > end_bound or (end[1] and start[0] == end_bound):
                raise ValidationError("must not be after end_date", "start_date")

    @post_load
    def make_window(self, data, **kwargs):
        start, end = data.pop("start_date"), data.pop("end_date")
        data["window"] = Window(
            start=start[0] if start else None,
            end=end[0] if end else None,
            end_is_date=bool(end and end[1]),
        )
        return data


def one_of(choices):
    return validate.OneOf(choices, error="must be one of {choices}")


class ImageListSchema(WindowSchema, PageSchema):
    class_name = fields.String(load_default=None, validate=one_of(CLASS_CHOICES))
    batch_id = fields.String(load_default=None, validate=validate.Length(max=64))
    sort = fields.String(load_default="newest", validate=one_of(tuple(IMAGE_SORTS)))


def non_negative(name):
    return fields.Float(
        load_default=None,
        allow_nan=False,
        validate=validate.Range(min=0, error=f"{name} must be a number ≥ 0"),
    )


class DefectQuerySchema(WindowSchema, PageSchema):
    class_name = fields.String(load_default=None, validate=one_of(CLASS_CHOICES))
    batch_id = fields.String(load_default=None, validate=validate.Length(max=64))
    img_unique_id = fields.String(load_default=None, validate=validate.Length(max=255))
    min_area = non_negative("min_area")
    max_area = non_negative("max_area")
    min_circularity = non_negative("min_circularity")
    max_circularity = non_negative("max_circularity")
    min_aspect_ratio = non_negative("min_aspect_ratio")
    max_aspect_ratio = non_negative("max_aspect_ratio")
    sort = fields.String(load_default="newest", validate=one_of(tuple(REGION_SORTS)))
    format = fields.String(load_default="json", validate=one_of(("json", "csv")))

    @validates_schema
    def ranges_in_order(self, data, **kwargs):
        for name in ("area", "circularity", "aspect_ratio"):
            low, high = data.get(f"min_{name}"), data.get(f"max_{name}")
            if low is not None and high is not None and low > high:
                raise ValidationError(f"must not be greater than max_{name}", f"min_{name}")


class HistoryImageSchema(Schema):
    img_unique_id = fields.String()
    timestamp = UtcDateTime()
    filename = fields.String(attribute="original_filename")
    batch_id = fields.String(allow_none=True)
    image_height = fields.Integer()
    image_width = fields.Integer()
    processing_time_seconds = fields.Float()
    total_defects = fields.Integer()
    defect_classes = fields.Function(defect_classes)
    input_image_path = fields.String()
    model = fields.String(attribute="model_name", allow_none=True)
    thumbnail_url = fields.Function(
        lambda image: external(
            "download.download_image", img_id=image.img_unique_id, kind="thumbnail"
        )
    )
    detail_url = fields.Function(
        lambda image: external("images.get_image", img_id=image.img_unique_id)
    )


def dump_region_row(row):
    """One region-search row (JSON)."""
    region = row.Region
    return {
        "region_unique_id": region.region_unique_id,
        "img_unique_id": region.img_unique_id,
        "class_id": row.class_id,
        "class_name": row.class_name,
        "region_id": region.region_id,
        **RegionSchema(only=REGION_VALUE_FIELDS).dump(region),
        "timestamp": utc_text(row.timestamp),
        "batch_id": row.batch_id,
        "filename": row.original_filename,
    }


REGION_VALUE_FIELDS = (
    "centroid",
    "bounding_box",
    "area_pixels",
    "perimeter",
    "major_axis",
    "minor_axis",
    "circularity",
    "aspect_ratio",
)
