"""Marshmallow schemas: they validate every input and shape every response.

They are also the API contract: aoi_flask/apidocs.py turns them into the
components of /apispec.json (apispec's MarshmallowPlugin). A field's type,
`validate=` constraints, `allow_none` and `metadata={"description": ...}` all
show up in the spec; fields of an `Answer` are required there unless their
metadata says `optional`.
"""

import difflib
import json
from datetime import UTC, datetime, timedelta

from flask import url_for
from marshmallow import (
    EXCLUDE,
    INCLUDE,
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
        return value if isinstance(value, str) else utc_text(value)  # str: dumped already


def load_or_400(schema, data):
    """Validate input; a failure names each field and what it accepts."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields_text = "; ".join(
            f"{name}: {' '.join(messages) if isinstance(messages, list) else messages}"
            for name, messages in exc.messages.items()
        )
        raise ApiError.of(
            "INVALID_PARAMETER",
            fields=fields_text,
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
        raise ApiError.of(
            "UNKNOWN_PARAMETER",
            plural="s" if len(unknown) > 1 else "",
            names=", ".join(repr(name) for name in unknown),
            hints=f" ({' '.join(hints)})" if hints else "",
            allowed=", ".join(allowed),
            details={"unknown": unknown, "allowed": allowed},
        )
    return load_or_400(schema, args)


def doc(description=None, **extra):
    """Field metadata for the spec: a description plus OpenAPI keywords (`optional`
    leaves an answer field out of `required`)."""
    return {"description": description, **extra} if description else extra


class Shaped(fields.Field):
    """A value passed through as-is, or computed from the object by `compute`,
    documented in the spec as the field `shape`."""

    def __init__(self, shape, compute=None, **kwargs):
        super().__init__(**kwargs)
        self.shape, self.compute = shape, compute

    def serialize(self, attr, obj, accessor=None, **kwargs):
        if self.compute is None:
            return super().serialize(attr, obj, accessor, **kwargs)
        return self.compute(obj)


def rows(schema, description=None):
    """A list of rows dumped already (by `schema`), passed through."""
    return Shaped(fields.List(fields.Nested(schema), metadata=doc(description)))


def utc(description, **kwargs):
    return UtcDateTime(metadata=doc(f"{description} (UTC, ISO 8601 with `Z`)"), **kwargs)


def link(description, compute=None):
    return Shaped(fields.String(metadata=doc(description, format="uri")), compute)


def count(description=None, **kwargs):
    return fields.Integer(validate=validate.Range(min=0), metadata=doc(description), **kwargs)


def one_of(choices):
    return validate.OneOf(choices, error="must be one of {choices}")


def class_filter():
    return fields.String(
        load_default=None, validate=one_of(CLASS_CHOICES), metadata=doc("Only this defect class")
    )


class StrictSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class Answer(Schema):
    """A JSON answer body (or part of one); closed unless `Meta.unknown = INCLUDE`."""


IMG_ID = doc(
    "Image id `YYYYmmdd_HHMMSS_XXXXXX` (UTC time of the upload and 6 random letters/digits)"
)
BATCH_ID = doc("Batch id, same form as an image id")


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
TRACE_EXAMPLES = {
    "lot_id": "LOT-2026.02_A",
    "wafer_id": "W07",
    "tool_id": "AOI-3",
    "recipe": "M1_POST_CMP",
    "layer": "M1",
    "operator": "chen.wei",
}


def trace_input(name, purpose):
    pattern, allowed = TRACE_PATTERNS[name]
    return fields.String(
        load_default=None,
        validate=[
            validate.Length(max=TRACE_LENGTH, error=f"must be at most {TRACE_LENGTH} characters"),
            validate.Regexp(pattern, error=f"may hold only {allowed}"),
        ],
        metadata=doc(f"{TRACE_DESCRIPTIONS[name]} — {purpose}", example=TRACE_EXAMPLES[name]),
    )


def trace_output(name):
    return fields.String(allow_none=True, metadata=doc(TRACE_DESCRIPTIONS[name]))


class TraceOutputSchema(Schema):
    """The traceability values an answer carries (null when not given); a mixin."""

    lot_id = trace_output("lot_id")
    wafer_id = trace_output("wafer_id")
    tool_id = trace_output("tool_id")
    recipe = trace_output("recipe")
    layer = trace_output("layer")
    operator = trace_output("operator")


def reviewer_name(what):
    return fields.String(
        allow_none=True, metadata=doc(f"Name of the API key that {what} (or `anonymous`)")
    )


class TraceabilitySchema(Schema):
    """The optional traceability form fields of an upload (a batch's apply to every
    file); documented in the multipart body (`x-form: Traceability`)."""

    class Meta:
        unknown = EXCLUDE

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


def load_traceability_or_400(form):
    return traceability_of(load_or_400(TraceabilitySchema(), form))


class TraceFilterSchema(TraceabilitySchema, StrictSchema):
    lot_id = trace_input("lot_id", "only images of this lot (exact match)")
    wafer_id = trace_input("wafer_id", "only images of this wafer (exact match)")
    tool_id = trace_input("tool_id", "only images from this tool (exact match)")
    recipe = trace_input("recipe", "only images of this recipe (exact match)")
    layer = trace_input("layer", "only images of this layer (exact match)")
    operator = trace_input("operator", "only images of this operator (exact match)")


# ---- inputs -------------------------------------------------------------------


class UploadOptionsSchema(StrictSchema):
    include_images = fields.Boolean(
        load_default=False,
        metadata=doc(
            "Also return `overlay_image`, `combined_image` and `mask_image` as base64 "
            "(also accepted as a form field)"
        ),
    )


class RegionFilterSchema(StrictSchema):
    class_name = class_filter()


class DownloadTypeSchema(Schema):
    type = fields.String(
        required=True,
        validate=one_of(DOWNLOAD_TYPES),
        metadata=doc("Which file", example="overlay"),
    )


class PathSchema(Schema):
    """The ids in URL paths (Flask's routing reads them; documented from here)."""

    img_id = fields.String(
        required=True,
        validate=validate.Length(max=255),
        metadata=doc("Image id (`img_unique_id`) as returned by POST /upload or GET /images"),
    )
    batch_id = fields.String(
        required=True,
        validate=validate.Length(max=64),
        metadata=doc("Batch id as returned by POST /upload/batch or GET /batches"),
    )
    region_unique_id = fields.String(
        required=True,
        validate=validate.Length(max=255),
        metadata=doc("Region id (`region_unique_id`) as returned by GET /images/{img_id}/regions"),
    )


class SignedLinkSchema(StrictSchema):
    """A download's query: only a signed link's parameters, read by aoi_flask/security.py
    before the view runs."""

    # Loaded as plain strings: security.py has judged them already (an old or bad
    # signature next to a valid key is ignored, and so is any without keys).
    expires = fields.String(
        load_default=None,
        metadata=doc(
            "Signed links only: expiry of the link, Unix time. The API adds it (with "
            "`signature`) to every download URL it hands out while API keys are configured, "
            "so the link works without a key header."
        ),
    )
    signature = fields.String(
        load_default=None,
        metadata=doc("Signed links only: HMAC-SHA256 of the path and `expires` (hex)"),
    )


# ---- outputs ------------------------------------------------------------------


def external(endpoint, **values):
    """An absolute URL; download URLs are signed while API keys are configured."""
    return signed_url(endpoint, url_for(endpoint, _external=True, **values))


def image_urls(image):
    img_id = image.img_unique_id
    return {
        kind: external("download.download_image", img_id=img_id, kind=kind)
        for kind in DOWNLOAD_TYPES
    }


def defect_classes(image):
    return {c.class_name: c.total_regions for c in image.classes if c.total_regions}


class ImageLinksSchema(
    Answer.from_dict({kind: link(f"Download of the {kind} image") for kind in DOWNLOAD_TYPES})
):
    class Meta:
        description = "Absolute download URLs"


DEFECT_CLASSES = fields.Dict(
    keys=fields.String(),
    values=fields.Integer(validate=validate.Range(min=1)),
    metadata=doc("Regions per class, non-empty classes only"),
)


class ClassRowSchema(Answer):
    class_unique_id = fields.String(metadata=doc("`<img_unique_id>_<class_id>`"))
    class_id = fields.Integer(
        metadata=doc("1 PI_Particle, 2 PR_Peeling, 3 Copper_Nodule, 4 Env_Particle")
    )
    class_name = fields.String(metadata=doc("Class name as the model reports it"))
    total_regions = count()
    total_area_pixels = count()


class ImageResultSchema(TraceOutputSchema, Answer):
    """The single-upload answer (PRD Example 1), also the per-file batch result."""

    class Meta:
        description = "A stored result (PRD Example 1)"

    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    filename = fields.String(
        attribute="original_filename",
        allow_none=True,
        metadata=doc("Original file name as uploaded (display form)"),
    )
    timestamp = utc("When the result was stored")
    processing_time_seconds = fields.Float(metadata=doc("Model time reported by the model service"))
    total_defects = count("Regions over all classes", allow_none=True)
    defect_classes = Shaped(DEFECT_CLASSES, defect_classes)
    image_width = fields.Integer(validate=validate.Range(min=1))
    image_height = fields.Integer(validate=validate.Range(min=1))
    model = fields.String(
        attribute="model_name",
        allow_none=True,
        metadata=doc("Model that produced the result (from /api/model/current)"),
    )
    batch_id = fields.String(
        allow_none=True, metadata=doc("Batch the image came in, null for single uploads")
    )
    images = Shaped(fields.Nested(ImageLinksSchema), image_urls)
    json_url = link(
        "Download of the analysis JSON",
        lambda image: external("download.download_json", img_id=image.img_unique_id),
    )
    reviewed_at = utc("When a reviewer marked the image reviewed", allow_none=True)
    reviewed_by = reviewer_name("marked the image reviewed")


class ImageDetailSchema(ImageResultSchema):
    class Meta:
        description = "Metadata, stored paths, download URLs and the per-class summary"

    created_at = utc("When the row was written", allow_none=True)
    input_image_path = fields.String(metadata=doc("Stored input, relative to the storage root"))
    result_image_1_path = fields.String(allow_none=True, metadata=doc("combined.png, relative"))
    result_image_2_path = fields.String(allow_none=True, metadata=doc("mask.png, relative"))
    result_image_3_path = fields.String(allow_none=True, metadata=doc("overlay.png, relative"))
    analysis_json_path = fields.String(allow_none=True, metadata=doc("analysis.json, relative"))
    thumbnail_path = fields.String(allow_none=True, metadata=doc("thumbnail.jpg, relative"))
    # Set when retention deleted the files (downloads answer 410) or fsck found them gone.
    purged_at = utc("When retention deleted the files (downloads then answer 410)", allow_none=True)
    files_missing_at = utc("When `flask aoi fsck` found stored files gone", allow_none=True)
    classes = fields.List(fields.Nested(ClassRowSchema), metadata=doc("All four class rows"))


class CentroidSchema(Answer):
    class Meta:
        description = "Centre of mass, pixels"

    x = fields.Float(attribute="centroid_x")
    y = fields.Float(attribute="centroid_y")


class BoundingBoxSchema(Answer):
    class Meta:
        description = "Axis-aligned box, pixels"

    x = fields.Integer(attribute="bbox_x")
    y = fields.Integer(attribute="bbox_y")
    width = count(attribute="bbox_width")
    height = count(attribute="bbox_height")


def region_values():
    """The measured values of a region, as the model reports them."""
    return {
        "centroid": Shaped(fields.Nested(CentroidSchema), CentroidSchema().dump),
        "bounding_box": Shaped(fields.Nested(BoundingBoxSchema), BoundingBoxSchema().dump),
        "area_pixels": fields.Integer(metadata=doc("Contour area (a one-pixel region has 0)")),
        "perimeter": fields.Float(metadata=doc("Contour length, pixels")),
        "major_axis": fields.Float(metadata=doc("Fitted ellipse, major axis, pixels")),
        "minor_axis": fields.Float(metadata=doc("Fitted ellipse, minor axis, pixels")),
        "circularity": fields.Float(metadata=doc("4πA/P² (0 for a one-pixel region)")),
        "aspect_ratio": fields.Float(metadata=doc("major_axis / minor_axis")),
    }


REGION_VALUE_FIELDS = tuple(region_values())


class RegionReviewSchema(Answer):
    class Meta:
        description = (
            "A region's current review, beside the model's values (`unreviewed`, with "
            "nulls, when never reviewed)"
        )

    disposition = fields.String(validate=one_of(DISPOSITIONS))
    reviewer_class_name = fields.String(
        allow_none=True, metadata=doc("The class the reviewer says it is (null: the model's)")
    )
    comment = fields.String(allow_none=True)
    reviewed_by = reviewer_name("set it")
    reviewed_at = utc("When it was set", allow_none=True)


UNREVIEWED = {
    "disposition": "unreviewed",
    "reviewer_class_name": None,
    "comment": None,
    "reviewed_by": None,
    "reviewed_at": None,
}


def dump_review(review):
    return RegionReviewSchema().dump(review) if review is not None else dict(UNREVIEWED)


REVIEW = Shaped(fields.Nested(RegionReviewSchema), metadata=doc("The reviewer's disposition"))
RegionValuesSchema = Answer.from_dict(region_values(), name="RegionValues")
RegionSchema = Answer.from_dict(
    {
        "region_unique_id": fields.String(metadata=doc("`<class_unique_id>_<region_id>`")),
        "region_id": fields.Integer(
            validate=validate.Range(min=0), metadata=doc("1-based within its class")
        ),
        **region_values(),
        "review": REVIEW,
    },
    name="Region",
)


class ClassRegionsSchema(ClassRowSchema):
    regions = fields.List(fields.Nested(RegionSchema))


class RegionsSchema(Answer):
    class Meta:
        description = "Every region of one image grouped by class (PRD Example 3)"

    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    total_regions = count()
    classes = fields.List(fields.Nested(ClassRegionsSchema))


def dump_regions(img_id, classes, reviews=None):
    """PRD Example 3: regions grouped by class, each with its review (`reviews`:
    RegionReview by region id; a region without one is unreviewed)."""
    body = RegionsSchema().dump(
        {
            "img_unique_id": img_id,
            "total_regions": sum(c.total_regions for c in classes),
            "classes": classes,
        }
    )
    for item in body["classes"]:
        for region in item["regions"]:
            region["review"] = dump_review((reviews or {}).get(region["region_unique_id"]))
    return body


class ClassListSchema(Answer):
    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    classes = fields.List(fields.Nested(ClassRowSchema))


class DeletedSchema(Answer):
    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    deleted = fields.Constant(True)


class ModelRegionSchema(Answer.from_dict({"region_id": fields.Integer(), **region_values()})):
    class Meta:
        unknown = INCLUDE
        description = "A region as the model service reports it"


class ModelClassSchema(Answer):
    class Meta:
        unknown = INCLUDE

    class_id = fields.Integer()
    total_regions = count()
    total_area_pixels = count()
    regions = fields.List(fields.Nested(ModelRegionSchema))


class ImageShapeSchema(Answer):
    class Meta:
        unknown = INCLUDE

    height = fields.Integer()
    width = fields.Integer()


class AnalysisResultsSchema(Answer):
    class Meta:
        unknown = INCLUDE
        description = "The model's analysis, exactly as the model service returned it"

    image_shape = fields.Nested(ImageShapeSchema)
    classes = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ModelClassSchema),
        metadata=doc("Keyed `<class_id>_<class_name>`; all four classes, even empty"),
    )
    performance = fields.Dict(metadata=doc("Timing as the model reports it", optional=True))


def base64_png(name):
    return fields.String(
        metadata=doc(
            f"The {name} PNG, base64 (only with include_images=true)", format="byte", optional=True
        )
    )


class UploadResultSchema(ImageResultSchema):
    class Meta:
        description = "Answer of POST /upload: the stored result and the model's analysis"

    analysis_results = Shaped(fields.Nested(AnalysisResultsSchema))
    overlay_image = base64_png("overlay")
    combined_image = base64_png("combined")
    mask_image = base64_png("mask")


class ErrorSchema(Answer):
    class Meta:
        description = "The one error shape of every failure (404, 405, 413 and 500 included)."

    success = fields.Constant(False)
    error = fields.String(metadata=doc("Human message: what went wrong and what to do"))
    code = fields.String(
        validate=validate.Regexp("^[A-Z][A-Z0-9_]*$"),
        metadata=doc("Stable machine code, UPPER_SNAKE (see errors.CATALOGUE)"),
    )
    details = fields.Dict(metadata=doc("Particulars (fields, limits); `{}` when there are none"))


# ---- pages --------------------------------------------------------------------


class PageSchema(StrictSchema):
    # Bounded so the row offset always fits the database's integers.
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(
            min=1, max=1_000_000, error="must be a whole number from 1 to 1000000"
        ),
        metadata=doc("Page, from 1"),
    )
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=500, error="must be a whole number from 1 to 500"),
        metadata=doc("Rows per page, 1–500"),
    )


def pages(total, limit):
    return max(1, -(-total // limit))


class PageEnvelopeSchema(Answer):
    """One page of rows; subclasses add the list."""

    success = fields.Constant(True)
    total = count("Matching rows in all pages")
    page = fields.Integer(validate=validate.Range(min=1), metadata=doc("This page (from 1)"))
    limit = fields.Integer(validate=validate.Range(min=1, max=500), metadata=doc("Rows per page"))
    pages = fields.Integer(
        validate=validate.Range(min=1), metadata=doc("Number of pages (at least 1)")
    )


def page_of(schema, key, rows, *, total, page, limit, **more):
    """A page envelope dumped through `schema` (`more`: its further fields)."""
    return schema().dump(
        {
            "total": total,
            "page": page,
            "limit": limit,
            "pages": pages(total, limit),
            key: rows,
            **more,
        }
    )


# ---- batches ----------------------------------------------------------------------

BATCH_STATUSES = ("queued", "running", "done", "partial", "failed")
FILE_STATES = ("queued", "processing", "done", "failed")


class BatchOptionsSchema(StrictSchema):
    async_ = fields.Boolean(
        data_key="async",
        load_default=False,
        metadata=doc(
            "Answer 202 as soon as the inputs are saved instead of waiting for the results "
            "(also accepted as a form field)"
        ),
    )


class BatchFileSchema(Answer):
    file_index = count()
    filename = fields.String()
    state = fields.String(validate=one_of(FILE_STATES))
    success = Shaped(
        fields.Boolean(metadata=doc("state is done")), lambda item: item.state == "done"
    )
    img_unique_id = Shaped(
        fields.String(allow_none=True, metadata=doc("The stored image, once done")),
        lambda item: item.img_unique_id if item.state == "done" else None,
    )
    error = fields.String(attribute="error_message", allow_none=True)
    code = fields.String(attribute="error_code", allow_none=True)
    attempts = count()
    started_at = utc("Last start", allow_none=True)
    finished_at = utc("Finished or failed", allow_none=True)
    total_defects = count(allow_none=True)
    processing_time_seconds = fields.Float(allow_none=True)
    retryable = fields.Boolean(metadata=doc("Failed with its input still stored"))


def batch_links(batch_id):
    return {
        "status_url": external("batches.get_batch", batch_id=batch_id),
        "download_url": external("download.download_batch", batch_id=batch_id),
    }


class BatchLinksSchema(Answer):
    status_url = link("Progress of the batch (GET /batches/{batch_id})")
    download_url = link("ZIP of the batch (GET /download/batch/{batch_id})")


class BatchProgressSchema(BatchLinksSchema):
    batch_id = fields.String(metadata=BATCH_ID)
    status = fields.String(validate=one_of(BATCH_STATUSES))
    created_at = utc("When the batch was accepted")
    started_at = utc("When the first file started", allow_none=True)
    finished_at = utc("When the last file finished", allow_none=True)
    total_images = count()
    queued = count()
    processing = count()
    processed = count("Files done")
    failed = count()
    percent_done = fields.Float(
        validate=validate.Range(min=0, max=100),
        metadata=doc("Finished (done or failed) share of the files"),
    )


class ClusterSchema(Answer):
    class Meta:
        description = "Model slots and batch queue of the whole cluster"

    mode = fields.String(
        validate=one_of(("embedded", "distributed")),
        metadata=doc(
            "embedded (one process, in-process pool) or distributed (Celery workers, "
            "AOI_BROKER_URL)"
        ),
    )
    reachable = fields.Boolean(metadata=doc("Redis answered (always true when embedded)"))
    model_slots = fields.Integer(
        validate=validate.Range(min=1),
        metadata=doc("AOI_MODEL_MAX_CONCURRENCY: the cap for all processes"),
    )
    model_slots_in_use = count("Model calls running now, all processes", allow_none=True)
    queue_depth = count("Batch files waiting for a worker", allow_none=True)
    taken_by_workers = count("Batch files taken by workers, not finished", allow_none=True)
    error = fields.String(metadata=doc("Why Redis did not answer", optional=True))


class BatchSchema(TraceOutputSchema, BatchProgressSchema):
    class Meta:
        description = "One batch: progress, counts and per-file state"

    success = fields.Constant(True)
    total_processing_time = fields.Float(validate=validate.Range(min=0))
    elapsed_seconds = fields.Float(validate=validate.Range(min=0))
    cluster = fields.Nested(ClusterSchema)
    files = rows(BatchFileSchema)


class BatchListSchema(PageEnvelopeSchema):
    batches = rows(BatchProgressSchema)


class FailedFileSchema(Answer):
    filename = fields.String()
    success = fields.Constant(False)
    error = fields.String(
        attribute="error_message", allow_none=True, metadata=doc("What went wrong and what to do")
    )
    code = fields.String(
        attribute="error_code", allow_none=True, metadata=doc("Error code, e.g. UNSUPPORTED_FORMAT")
    )


class BatchFileFailedSchema(FailedFileSchema):
    class Meta:
        description = "A file that failed; the others are unaffected"

    file_index = count()


class BatchFileDoneSchema(ImageResultSchema):
    class Meta:
        description = "A file that was analysed and stored"

    file_index = count()
    analysis_results = Shaped(fields.Nested(AnalysisResultsSchema))


class AcceptedFileSchema(Answer):
    class Meta:
        description = "One row per file; refused files carry success, error, code"

    file_index = count()
    filename = fields.String()
    state = fields.String(validate=one_of(FILE_STATES))
    success = fields.Constant(False, metadata=doc(optional=True))
    error = fields.String(allow_none=True, metadata=doc("What went wrong", optional=True))
    code = fields.String(allow_none=True, metadata=doc("Error code", optional=True))


class BatchAcceptedSchema(BatchLinksSchema):
    class Meta:
        description = "Answer of POST /upload/batch?async=true: inputs saved, work queued"

    success = fields.Constant(True)
    batch_id = fields.String(metadata=BATCH_ID)
    status = fields.String(validate=one_of(BATCH_STATUSES))
    total_images = count()
    accepted = count("Files saved and queued")
    rejected = count("Files refused at once (bad type, empty, too large)")
    results = rows(AcceptedFileSchema)


BATCH_RESULT_ROW = {
    "oneOf": [
        {"$ref": "#/components/schemas/BatchFileDone"},
        {"$ref": "#/components/schemas/BatchFileFailed"},
    ]
}


class BatchResultSchema(BatchLinksSchema):
    class Meta:
        description = "Answer of POST /upload/batch (waited for): one result per file"

    success = fields.Constant(True)
    batch_id = fields.String(metadata=BATCH_ID)
    status = fields.String(validate=one_of(BATCH_STATUSES))
    total_images = count()
    processed = count()
    failed = count()
    total_processing_time = fields.Float(
        validate=validate.Range(min=0), metadata=doc("Sum of model times, seconds")
    )
    results = fields.List(fields.Raw(metadata=BATCH_RESULT_ROW))


class BatchRetrySchema(BatchLinksSchema):
    success = fields.Constant(True)
    batch_id = fields.String(metadata=BATCH_ID)
    retried = count("Failed files queued again")
    message = fields.String()


# ---- history, region search, statistics -----------------------------------------------

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


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


def date_param(description):
    return DateOrDateTime(
        load_default=None,
        metadata=doc(description, type="string", pattern=DATE_PATTERN, example="2026-02-24"),
    )


class WindowSchema(StrictSchema):
    start_date = date_param(
        "From this moment on (inclusive): a date `2026-02-24` or an ISO 8601 datetime "
        "`2026-02-24T10:30:00Z` (years 1900–9998); times without an offset are UTC"
    )
    end_date = date_param("Up to this moment (inclusive); a bare date means the whole day")

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


def batch_filter(what):
    return fields.String(
        load_default=None,
        validate=validate.Length(max=64),
        metadata=doc(f"Only {what} of this batch"),
    )


def sort_order(sorts):
    return fields.String(
        load_default="newest", validate=one_of(tuple(sorts)), metadata=doc("Order of the rows")
    )


class CursorSchema(PageSchema):
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=2000),
        metadata=doc(
            "Keyset paging: the `next_cursor` of the previous page (same filters and sort). "
            "Given, it wins over `page`"
        ),
    )


class ImageListSchema(TraceFilterSchema, WindowSchema, CursorSchema):
    class_name = class_filter()
    batch_id = batch_filter("images")
    reviewed = fields.Boolean(
        load_default=None,
        metadata=doc("true: only images marked reviewed; false: only the others"),
    )
    sort = sort_order(IMAGE_SORTS)


def non_negative(name, description):
    return fields.Float(
        load_default=None,
        allow_nan=False,
        validate=validate.Range(min=0, error=f"{name} must be a number ≥ 0"),
        metadata=doc(description),
    )


class DefectQuerySchema(TraceFilterSchema, WindowSchema, CursorSchema):
    class_name = class_filter()
    batch_id = batch_filter("regions of images")
    disposition = fields.String(
        load_default=None,
        validate=one_of(DISPOSITIONS),
        metadata=doc("Only regions with this review disposition (`unreviewed`: none set)"),
    )
    img_unique_id = fields.String(
        load_default=None,
        validate=validate.Length(max=255),
        metadata=doc("Only regions of this image"),
    )
    min_area = non_negative("min_area", "Smallest area_pixels")
    max_area = non_negative("max_area", "Largest area_pixels")
    min_circularity = non_negative("min_circularity", "Lowest circularity")
    max_circularity = non_negative("max_circularity", "Highest circularity")
    min_aspect_ratio = non_negative("min_aspect_ratio", "Lowest aspect ratio")
    max_aspect_ratio = non_negative("max_aspect_ratio", "Highest aspect ratio")
    sort = sort_order(REGION_SORTS)
    format = fields.String(
        load_default="json",
        validate=one_of(("json", "csv")),
        metadata=doc("`csv` streams the rows as a CSV attachment (defects.csv)"),
    )

    @validates_schema
    def ranges_in_order(self, data, **kwargs):
        for name in ("area", "circularity", "aspect_ratio"):
            low, high = data.get(f"min_{name}"), data.get(f"max_{name}")
            if low is not None and high is not None and low > high:
                raise ValidationError(f"must not be greater than max_{name}", f"min_{name}")


class HistoryImageSchema(TraceOutputSchema, Answer):
    img_unique_id = fields.String(metadata=IMG_ID)
    timestamp = utc("When the result was stored")
    filename = fields.String(attribute="original_filename", allow_none=True)
    batch_id = fields.String(allow_none=True)
    image_height = fields.Integer()
    image_width = fields.Integer()
    processing_time_seconds = fields.Float()
    total_defects = count(allow_none=True)
    defect_classes = Shaped(DEFECT_CLASSES, defect_classes)
    input_image_path = fields.String()
    model = fields.String(attribute="model_name", allow_none=True)
    thumbnail_url = link(
        "Gallery thumbnail",
        lambda image: external(
            "download.download_image", img_id=image.img_unique_id, kind="thumbnail"
        ),
    )
    detail_url = link(
        "GET /images/{img_id}",
        lambda image: external("images.get_image", img_id=image.img_unique_id),
    )
    reviewed_at = utc("When a reviewer marked the image reviewed", allow_none=True)
    reviewed_by = reviewer_name("marked the image reviewed")


class SearchPageSchema(PageEnvelopeSchema):
    """History and region-search pages: bounded totals and keyset cursors (issue #12)."""

    total_is_lower_bound = fields.Boolean(
        metadata=doc(
            "True when only the first `total` matches were counted (region search: more "
            "than 10,000 matches); there are more. Always false for /images (exact)"
        )
    )
    next_cursor = fields.String(
        allow_none=True,
        metadata=doc(
            "Opaque position after this page's last row: pass it as `cursor` (same filters "
            "and sort) for the next page, at the same cost at any depth; null on the last page"
        ),
    )


class HistoryPageSchema(SearchPageSchema):
    images = rows(HistoryImageSchema)


DefectRowSchema = Answer.from_dict(
    {
        "region_unique_id": fields.String(),
        "img_unique_id": fields.String(metadata=IMG_ID),
        "class_id": fields.Integer(),
        "class_name": fields.String(),
        "region_id": fields.Integer(),
        **region_values(),
        "timestamp": utc("When the image was stored"),
        "batch_id": fields.String(allow_none=True),
        "filename": fields.String(allow_none=True),
        **{name: trace_output(name) for name in TRACE_FIELDS},
        "review": REVIEW,
    },
    name="DefectRow",
)


class DefectPageSchema(SearchPageSchema):
    regions = rows(DefectRowSchema)


def dump_region_row(row, trace=None, review=None):
    """One region-search row (JSON), with its image's traceability values and its review."""
    region = row.Region
    return {
        "region_unique_id": region.region_unique_id,
        "img_unique_id": region.img_unique_id,
        "class_id": row.class_id,
        "class_name": row.class_name,
        "region_id": region.region_id,
        **RegionValuesSchema().dump(region),
        "timestamp": utc_text(row.timestamp),
        "batch_id": row.batch_id,
        "filename": row.original_filename,
        **{name: (trace or {}).get(name) for name in TRACE_FIELDS},
        "review": dump_review(review),
    }


class TotalsSchema(Answer):
    images = count()
    regions = count()
    batches = count()


class ProcessingTimeSchema(Answer):
    class Meta:
        description = "Seconds; null when there are no images"

    mean = fields.Float(allow_none=True)
    min = fields.Float(allow_none=True)
    max = fields.Float(allow_none=True)


class DateRangeSchema(Answer):
    first = utc("Oldest image", allow_none=True)
    last = utc("Newest image", allow_none=True)


class StorageUseSchema(Answer):
    bytes_used = count("Inputs and results, bytes")


class ClassStatsSchema(Answer):
    class_id = fields.Integer()
    class_name = fields.String()
    images = count("Images with at least one region")
    regions = count()
    area_pixels = count()


class DailySchema(Answer):
    date = fields.String(metadata=doc("UTC day", format="date"))
    images = count()
    defects = count()


class WindowEchoSchema(Answer):
    start_date = fields.String(allow_none=True, metadata=doc("As given"))
    end_date = fields.String(allow_none=True, metadata=doc("As given"))


# ---- statistics of the reviews (issue #16) ------------------------------------------------

GROUP_BY_CHOICES = ("tool_id", "lot_id", "recipe", "wafer_id", "layer", "operator")


class StatsQuerySchema(TraceFilterSchema, WindowSchema):
    group_by = fields.String(
        load_default=None,
        validate=one_of(GROUP_BY_CHOICES),
        metadata=doc("Also give totals and review rates per value of this field (`groups`)"),
    )


def share(name):
    return fields.Float(
        allow_none=True,
        validate=validate.Range(min=0, max=1),
        metadata=doc(f"{name} / reviewed_regions (null: none reviewed)"),
    )


class ReviewRatesSchema(Answer):
    class Meta:
        description = "What the reviewers said of the model's regions"

    reviewed_regions = count("Regions with a disposition other than unreviewed")
    true_defect = count()
    false_call = count()
    nuisance = count()
    false_call_rate = share("false_call")
    nuisance_rate = share("nuisance")


class ClassRatesSchema(ReviewRatesSchema):
    class_name = fields.String(metadata=doc("The model's class"))


class ToolRatesSchema(ReviewRatesSchema):
    tool_id = trace_output("tool_id")


class ModelRatesSchema(ReviewRatesSchema):
    model = fields.String(allow_none=True, metadata=doc("Model name"))


class DayRatesSchema(ReviewRatesSchema):
    date = fields.String(metadata=doc("UTC day the images were taken", format="date"))


class ConfusionSchema(Answer):
    class Meta:
        description = "Reviewed regions by model class → reviewer class"

    model_class = fields.String()
    reviewer_class = fields.String(
        metadata=doc("The corrected class if given, else the model's; `false_call` for false calls")
    )
    regions = count()


class ReviewStatsSchema(Answer):
    class Meta:
        description = "How the reviews judge the model: in total, per class, tool, model and day"

    totals = fields.Nested(ReviewRatesSchema)
    by_class = fields.List(fields.Nested(ClassRatesSchema))
    by_tool = fields.List(fields.Nested(ToolRatesSchema))
    by_model = fields.List(fields.Nested(ModelRatesSchema))
    confusion = fields.List(fields.Nested(ConfusionSchema))
    daily = fields.List(fields.Nested(DayRatesSchema))


def optional_trace(name, description, allow_none=True):
    return fields.String(
        allow_none=allow_none,
        metadata=doc(f"{TRACE_DESCRIPTIONS[name]} ({description})", optional=True),
    )


class GroupRowSchema(
    ReviewRatesSchema.from_dict(
        {name: optional_trace(name, "the grouped field only") for name in TRACE_FIELDS}
    )
):
    class Meta:
        description = "One value of `group_by`: its images, regions and review rates"

    images = count()
    regions = count()


class TraceEchoSchema(
    Answer.from_dict(
        {name: optional_trace(name, "as given", allow_none=False) for name in TRACE_FIELDS}
    )
):
    class Meta:
        description = "The traceability filters applied (only those given)"


class StatsSchema(Answer):
    class Meta:
        description = "Totals, per-class counts, processing times, storage and the daily trend"

    success = fields.Constant(True)
    totals = fields.Nested(TotalsSchema)
    processing_time = fields.Nested(ProcessingTimeSchema)
    date_range = fields.Nested(DateRangeSchema)
    storage = fields.Nested(StorageUseSchema)
    classes = fields.List(fields.Nested(ClassStatsSchema))
    daily = fields.List(fields.Nested(DailySchema))
    window = fields.Nested(WindowEchoSchema)
    filters = fields.Nested(TraceEchoSchema)
    review = fields.Nested(ReviewStatsSchema)
    group_by = fields.String(
        validate=one_of(GROUP_BY_CHOICES), metadata=doc("As requested", optional=True)
    )
    groups = fields.List(
        fields.Nested(GroupRowSchema),
        metadata=doc("One row per value of `group_by` (only with it)", optional=True),
    )


# ---- review (issue #16) ---------------------------------------------------------------------

COMMENT_LENGTH = 1000
DEFECT_VERDICTS = ("true_defect", "nuisance")


class Body(Schema):
    """A JSON request body (components.schemas); an unknown key is refused."""

    class Meta:
        unknown = RAISE


class RegionDispositionSchema(Body):
    class Meta:
        description = "A reviewer's verdict on one region; the model's own values stay untouched"

    disposition = fields.String(
        required=True,
        validate=one_of(DISPOSITIONS),
        metadata=doc("unreviewed, true_defect, false_call or nuisance", example="false_call"),
    )
    reviewer_class_name = fields.String(
        load_default=None,
        allow_none=True,
        validate=one_of(CLASS_CHOICES),
        metadata=doc(
            "The class the reviewer says it is (true_defect and nuisance only; null: the "
            "model's class)"
        ),
    )
    comment = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(
            max=COMMENT_LENGTH, error=f"must be at most {COMMENT_LENGTH} characters"
        ),
        metadata=doc(f"Free text, at most {COMMENT_LENGTH} characters"),
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
    class Meta:
        description = "The disposition of one region of the image"

    region_unique_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata=doc("A region of this image", example="20260224_173819_AB12CD_1_1"),
    )


class ImageReviewSchema(Body):
    class Meta:
        description = "Several dispositions and/or the image's reviewed mark, all or nothing"

    regions = fields.List(
        fields.Nested(RegionReviewItemSchema),
        load_default=list,
        validate=validate.Length(max=10_000, error="at most 10000 regions per request"),
        metadata=doc("Dispositions to set, one per region"),
    )
    reviewed = fields.Boolean(
        load_default=None,
        allow_none=True,
        metadata=doc("true: mark the image reviewed; false: clear the mark"),
    )

    @validates_schema
    def something_to_do(self, data, **kwargs):
        if not data.get("regions") and data.get("reviewed") is None:
            raise ValidationError("give at least one region, or reviewed true/false", "regions")
        ids = [item["region_unique_id"] for item in data.get("regions") or []]
        if len(ids) != len(set(ids)):
            raise ValidationError("each region may appear only once", "regions")


class RegionReviewedSchema(Answer):
    class Meta:
        description = "Answer of PATCH /images/{img_id}/regions/{region_unique_id}"

    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    region_unique_id = fields.String()
    review = REVIEW


class ReviewProgressSchema(Answer):
    regions = count("Regions of the image")
    reviewed = count("Regions with a disposition other than unreviewed")


class ImageReviewedSchema(Answer):
    class Meta:
        description = "Answer of POST /images/{img_id}/review: what changed, and the progress"

    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    changes = count("Log entries written (values already set write none)")
    reviewed_at = utc("When the image was marked reviewed", allow_none=True)
    reviewed_by = reviewer_name("marked the image reviewed")
    progress = fields.Nested(ReviewProgressSchema)


class ReviewValueSchema(Answer):
    class Meta:
        description = "A logged value: a region's review, or the image's reviewed mark"

    disposition = fields.String(validate=one_of(DISPOSITIONS), metadata=doc(optional=True))
    reviewer_class_name = fields.String(allow_none=True, metadata=doc(optional=True))
    comment = fields.String(allow_none=True, metadata=doc(optional=True))
    reviewed = fields.Boolean(metadata=doc("The image's mark", optional=True))
    reviewed_by = fields.String(allow_none=True, metadata=doc(optional=True))


def logged_value(attribute, description):
    return Shaped(
        fields.Nested(ReviewValueSchema, metadata=doc(description)),
        lambda entry: json.loads(getattr(entry, attribute)),
    )


class ReviewLogEntrySchema(Answer):
    id = fields.Integer(
        validate=validate.Range(min=1), metadata=doc("Increasing; the log is append-only")
    )
    region_unique_id = fields.String(
        allow_none=True, metadata=doc("null: the image's reviewed mark changed")
    )
    changed_by = fields.String(metadata=doc("API key name, or anonymous"))
    changed_at = utc("When")
    old = logged_value("old_value", "Value before")
    new = logged_value("new_value", "Value after")


class ReviewLogSchema(Answer):
    class Meta:
        description = "Every review change of one image, oldest first"

    success = fields.Constant(True)
    img_unique_id = fields.String(metadata=IMG_ID)
    total = count()
    entries = fields.List(fields.Nested(ReviewLogEntrySchema))


# ---- health -----------------------------------------------------------------------


class LimitsSchema(Answer):
    max_upload_mb = fields.Integer()
    max_batch_files = fields.Integer()
    supported_formats = fields.List(fields.String())


class DatabaseHealthSchema(Answer):
    reachable = fields.Boolean()
    backend = fields.String(metadata=doc("sqlite, mysql, …"))
    latency_ms = fields.Float(metadata=doc(optional=True))
    error = fields.String(metadata=doc(optional=True))


class BreakerSchema(Answer):
    class Meta:
        description = "Circuit breaker in front of the model service"

    state = fields.String(
        validate=one_of(("closed", "open", "half_open", "disabled")),
        metadata=doc(
            "closed; open: uploads fail fast with 503 MODEL_UNAVAILABLE without calling the "
            "model service; half_open: one probe call is let through; disabled"
        ),
    )
    consecutive_failures = count()
    threshold = count()
    cooldown_seconds = fields.Float(validate=validate.Range(min=0))
    retry_in_seconds = fields.Float(validate=validate.Range(min=0))
    opened_total = count()
    rejected_total = count()


class ModelServiceHealthSchema(Answer):
    url = fields.String()
    reachable = fields.Boolean()
    latency_ms = fields.Float(metadata=doc(optional=True))
    error = fields.String(metadata=doc(optional=True))
    model_loaded = fields.Boolean()
    device = fields.String(allow_none=True)
    model_name = fields.String(allow_none=True)
    current_model = fields.String(allow_none=True)
    simulator = fields.Boolean(metadata=doc("The bundled simulator, not the real model"))
    active_calls = count()
    max_concurrent_calls = fields.Integer(validate=validate.Range(min=1))
    breaker = fields.Nested(BreakerSchema)


class StorageHealthSchema(Answer):
    writable = fields.Boolean()
    free_bytes = fields.Integer(allow_none=True)


class HealthSchema(Answer):
    status = fields.String(
        validate=one_of(("ok", "degraded", "down")),
        metadata=doc(
            "ok, degraded (model service, storage, or Redis in distributed mode) or down (database)"
        ),
    )
    service = fields.String(validate=one_of(("aoi-inference-agent",)))
    uptime_seconds = fields.Float(validate=validate.Range(min=0))
    limits = fields.Nested(LimitsSchema)
    database = fields.Nested(DatabaseHealthSchema)
    model_service = fields.Nested(ModelServiceHealthSchema)
    storage = fields.Nested(StorageHealthSchema)
    cluster = fields.Nested(ClusterSchema)
