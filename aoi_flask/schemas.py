"""Marshmallow schemas: they validate every input and shape every response."""

from flask import url_for
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from .errors import ApiError
from .models import CLASS_NAMES

DOWNLOAD_TYPES = ("input", "combined", "mask", "overlay", "thumbnail")
CLASS_CHOICES = tuple(CLASS_NAMES.values())


class UtcDateTime(fields.DateTime):
    """Naive UTC datetimes from the database, written as ISO 8601 with `Z`."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


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


# ---- outputs ------------------------------------------------------------------


def external(endpoint, **values):
    return url_for(endpoint, _external=True, **values)


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
