"""Marshmallow schemas: they validate every input and shape every response."""

import json
from datetime import UTC, datetime, timedelta

from flask import url_for
from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from .errors import ApiError
from .models import CLASS_NAMES, DISPOSITIONS, TRACE_FIELDS, TRACE_LENGTH
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


class StrictSchema(Schema):
    class Meta:
        unknown = EXCLUDE


# ---- traceability (issue #16) ---------------------------------------------------------

TRACE_DESCRIPTIONS = {
    "lot_id": "Production lot of the wafer",
    "wafer_id": "Wafer within the lot",
    "tool_id": "Inspection (AOI) tool that took the image",
    "recipe": "Inspection recipe",
    "layer": "Process layer inspected",
    "operator": "Operator who ran the inspection",
}
TRACE_CHARACTERS = "letters, digits, '.', '_' and '-'"
TRACE_PATTERNS = {
    name: (r"^[A-Za-z0-9._-]+$", TRACE_CHARACTERS) for name in TRACE_FIELDS if name != "operator"
}
# A person's name may hold spaces.
TRACE_PATTERNS["operator"] = (r"^[A-Za-z0-9._ -]+$", f"{TRACE_CHARACTERS} and spaces")


def trace_input(name, purpose):
    pattern, allowed = TRACE_PATTERNS[name]
    return fields.String(
        load_default=None,
        validate=[
            validate.Length(max=TRACE_LENGTH, error=f"must be at most {TRACE_LENGTH} characters"),
            validate.Regexp(pattern, error=f"may hold only {allowed}"),
        ],
        metadata={"description": f"{TRACE_DESCRIPTIONS[name]} — {purpose}"},
    )


def trace_output(name):
    return fields.String(allow_none=True, metadata={"description": TRACE_DESCRIPTIONS[name]})


def reviewed_at_output():
    return UtcDateTime(
        allow_none=True, metadata={"description": "When a reviewer marked the image reviewed"}
    )


def reviewed_by_output():
    return fields.String(
        allow_none=True,
        metadata={"description": "Name of the API key that marked it reviewed (or anonymous)"},
    )


class TraceabilitySchema(StrictSchema):
    """Optional traceability form fields of an upload (a batch's apply to every file)."""

    lot_id = trace_input("lot_id", "stored with the image")
    wafer_id = trace_input("wafer_id", "stored with the image")
    tool_id = trace_input("tool_id", "stored with the image")
    recipe = trace_input("recipe", "stored with the image")
    layer = trace_input("layer", "stored with the image")
    operator = trace_input("operator", "stored with the image")

    @pre_load
    def blank_is_absent(self, data, **kwargs):
        """Surrounding spaces go; an empty field (an unfilled form input) is no value."""
        cleaned = dict(data)
        for name in TRACE_FIELDS:
            value = cleaned.get(name)
            if isinstance(value, str):
                value = value.strip()
                if value:
                    cleaned[name] = value
                else:
                    cleaned.pop(name)
        return cleaned


def traceability_of(options):
    """The traceability values of loaded options, absent ones left out."""
    return {name: options[name] for name in TRACE_FIELDS if options.get(name) is not None}


class TraceFilterSchema(TraceabilitySchema):
    lot_id = trace_input("lot_id", "only images of this lot (exact match)")
    wafer_id = trace_input("wafer_id", "only images of this wafer (exact match)")
    tool_id = trace_input("tool_id", "only images from this tool (exact match)")
    recipe = trace_input("recipe", "only images of this recipe (exact match)")
    layer = trace_input("layer", "only images of this layer (exact match)")
    operator = trace_input("operator", "only images of this operator (exact match)")


# ---- inputs -------------------------------------------------------------------


class UploadOptionsSchema(TraceabilitySchema):
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
    lot_id = trace_output("lot_id")
    wafer_id = trace_output("wafer_id")
    tool_id = trace_output("tool_id")
    recipe = trace_output("recipe")
    layer = trace_output("layer")
    operator = trace_output("operator")
    reviewed_at = reviewed_at_output()
    reviewed_by = reviewed_by_output()


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


class BatchOptionsSchema(TraceabilitySchema):
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


class ImageListSchema(WindowSchema, PageSchema, TraceFilterSchema):
    reviewed = fields.Boolean(
        load_default=None,
        metadata={"description": "true: only images marked reviewed; false: only the others"},
    )
    class_name = fields.String(load_default=None, validate=one_of(CLASS_CHOICES))
    batch_id = fields.String(load_default=None, validate=validate.Length(max=64))
    sort = fields.String(load_default="newest", validate=one_of(tuple(IMAGE_SORTS)))


def non_negative(name):
    return fields.Float(
        load_default=None,
        allow_nan=False,
        validate=validate.Range(min=0, error=f"{name} must be a number ≥ 0"),
    )


class DefectQuerySchema(WindowSchema, PageSchema, TraceFilterSchema):
    disposition = fields.String(
        load_default=None,
        validate=one_of(DISPOSITIONS),
        metadata={"description": "Only regions with this review disposition"},
    )
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
    lot_id = trace_output("lot_id")
    wafer_id = trace_output("wafer_id")
    tool_id = trace_output("tool_id")
    recipe = trace_output("recipe")
    layer = trace_output("layer")
    operator = trace_output("operator")
    reviewed_at = reviewed_at_output()
    reviewed_by = reviewed_by_output()


def dump_region_row(row, trace=None, review=None):
    """One region-search row (JSON), with its image's traceability values and its review."""
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
        **{name: (trace or {}).get(name) for name in TRACE_FIELDS},
        "review": dump_review(review),
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


# ---- review (issue #16) ---------------------------------------------------------------------

GROUP_BY_CHOICES = ("tool_id", "lot_id", "recipe", "wafer_id", "layer", "operator")
COMMENT_LENGTH = 1000
DEFECT_VERDICTS = ("true_defect", "nuisance")


class StatsQuerySchema(WindowSchema, TraceFilterSchema):
    group_by = fields.String(
        load_default=None,
        validate=one_of(GROUP_BY_CHOICES),
        metadata={"description": "Also give totals and review rates per value of this field"},
    )


class RegionDispositionSchema(Schema):
    """A reviewer's verdict on one region; the model's own values stay untouched."""

    class Meta:
        unknown = RAISE

    disposition = fields.String(
        required=True,
        validate=one_of(DISPOSITIONS),
        metadata={"description": "unreviewed, true_defect, false_call or nuisance"},
    )
    reviewer_class_name = fields.String(
        load_default=None,
        allow_none=True,
        validate=one_of(CLASS_CHOICES),
        metadata={"description": "The class the reviewer says it is (null: the model's class)"},
    )
    comment = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(
            max=COMMENT_LENGTH, error=f"must be at most {COMMENT_LENGTH} characters"
        ),
        metadata={"description": "Free text, at most 1000 characters"},
    )

    @validates_schema
    def class_only_for_defects(self, data, **kwargs):
        if data.get("reviewer_class_name") and data["disposition"] not in DEFECT_VERDICTS:
            raise ValidationError(
                "goes only with disposition true_defect or nuisance (a false call or an "
                "unreviewed region has no class); leave it out or null",
                "reviewer_class_name",
            )


class RegionReviewItemSchema(RegionDispositionSchema):
    region_unique_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "A region of this image"},
    )


class ImageReviewSchema(Schema):
    class Meta:
        unknown = RAISE

    regions = fields.List(
        fields.Nested(RegionReviewItemSchema),
        load_default=list,
        validate=validate.Length(max=10_000, error="at most 10000 regions per request"),
        metadata={"description": "Dispositions to set, one per region"},
    )
    reviewed = fields.Boolean(
        load_default=None,
        allow_none=True,
        metadata={"description": "true: mark the image reviewed; false: clear the mark"},
    )

    @validates_schema
    def something_to_do(self, data, **kwargs):
        if not data.get("regions") and data.get("reviewed") is None:
            raise ValidationError("give at least one region, or reviewed true/false", "regions")
        ids = [item["region_unique_id"] for item in data.get("regions") or []]
        if len(ids) != len(set(ids)):
            raise ValidationError("each region may appear only once", "regions")


class RegionReviewSchema(Schema):
    """A region's current review (`unreviewed`, with nulls, when never reviewed)."""

    disposition = fields.String(
        metadata={"description": "unreviewed, true_defect, false_call, nuisance"}
    )
    reviewer_class_name = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    reviewed_by = fields.String(allow_none=True, metadata={"description": "API key name"})
    reviewed_at = UtcDateTime(allow_none=True)


UNREVIEWED = {
    "disposition": "unreviewed",
    "reviewer_class_name": None,
    "comment": None,
    "reviewed_by": None,
    "reviewed_at": None,
}


def dump_review(review):
    return RegionReviewSchema().dump(review) if review is not None else dict(UNREVIEWED)


class ReviewLogEntrySchema(Schema):
    id = fields.Integer(metadata={"description": "Increasing; the log is append-only"})
    region_unique_id = fields.String(
        allow_none=True, metadata={"description": "null: the image's reviewed mark changed"}
    )
    changed_by = fields.String(metadata={"description": "API key name, or anonymous"})
    changed_at = UtcDateTime()
    old = fields.Function(lambda entry: json.loads(entry.old_value))
    new = fields.Function(lambda entry: json.loads(entry.new_value))
