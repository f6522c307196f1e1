"""Review group (issue #16): a QC reviewer's dispositions of detected regions and
the append-only log of every change. The model's values are never changed.

When API keys are configured these routes, like every API route, need a key; the
log records the key's name (`AOI_API_KEYS=qc-line1:KEY1,...`), else `anonymous`.
"""

from flask import Blueprint, jsonify, request

from .errors import ApiError
from .schemas import (
    ImageReviewedSchema,
    ImageReviewSchema,
    RegionDispositionSchema,
    RegionReviewedSchema,
    ReviewLogSchema,
    dump_review,
    load_or_400,
)
from .security import reviewer_name
from .services import reviews

bp = Blueprint("reviews", __name__)


def json_body(example):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError.of("INVALID_BODY", example=example)
    return body


@bp.patch("/images/<img_id>/regions/<region_unique_id>")
def review_region(img_id, region_unique_id):
    """Set the disposition of one region: true_defect, false_call, nuisance or unreviewed.

    Optionally a corrected class (`reviewer_class_name`, for true_defect and
    nuisance) and a comment. The model's class and measurements stay as they are;
    the change is appended to the review log (GET /images/{img_id}/review-log).
    Sending the values the region already has changes and logs nothing.
    ---
    tags: [review]
    operationId: review_region
    parameters:
      - $ref: '#/components/parameters/ImgId'
      - $ref: '#/components/parameters/RegionUniqueId'
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: '#/components/schemas/RegionDisposition'}
          examples:
            sample: {$ref: '#/components/examples/RegionDisposition'}
    responses:
      200:
        description: The region's review now
        content:
          application/json:
            schema: {$ref: '#/components/schemas/RegionReviewed'}
            examples:
              sample: {$ref: '#/components/examples/RegionReviewed'}
      400: {$ref: '#/components/responses/ReviewRejected'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/RegionNotFound'}
      500: {$ref: '#/components/responses/DatabaseError'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    values = load_or_400(RegionDispositionSchema(), json_body('{"disposition": "false_call"}'))
    review = reviews.set_region_review(img_id, region_unique_id, values, reviewer_name())
    return jsonify(
        RegionReviewedSchema().dump(
            {
                "img_unique_id": img_id,
                "region_unique_id": region_unique_id,
                "review": dump_review(review),
            }
        )
    )


@bp.post("/images/<img_id>/review")
def review_image(img_id):
    """Set several dispositions at once and/or mark the whole image reviewed.

    All or nothing: when one region is not of this image nothing is changed
    (404 REGION_NOT_FOUND). `reviewed: true` marks the image reviewed (the UI's
    "next unreviewed image" walks images without the mark), `false` clears it.
    ---
    tags: [review]
    operationId: review_image
    parameters:
      - $ref: '#/components/parameters/ImgId'
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: '#/components/schemas/ImageReview'}
          examples:
            sample: {$ref: '#/components/examples/ImageReview'}
    responses:
      200:
        description: What was changed, and the image's review progress
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ImageReviewed'}
            examples:
              sample: {$ref: '#/components/examples/ImageReviewed'}
      400: {$ref: '#/components/responses/ImageReviewRejected'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/RegionNotFound'}
      500: {$ref: '#/components/responses/DatabaseError'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_or_400(ImageReviewSchema(), json_body('{"reviewed": true}'))
    _, changes = reviews.review_image(
        img_id, options["regions"], options["reviewed"], reviewer_name()
    )
    image = reviews.get_image(img_id)
    return jsonify(
        ImageReviewedSchema().dump(
            {
                "img_unique_id": img_id,
                "changes": changes,
                "reviewed_at": image.reviewed_at,
                "reviewed_by": image.reviewed_by,
                "progress": reviews.review_progress(img_id, image.total_defects or 0),
            }
        )
    )


@bp.get("/images/<img_id>/review-log")
def review_log(img_id):
    """Every review change of one image, oldest first: who, when, old and new value.

    The log is append-only. `changed_by` is the name of the API key used (or
    `anonymous` while the API is open); `region_unique_id` is null for changes of
    the image's reviewed mark.
    ---
    tags: [review]
    operationId: review_log
    parameters:
      - $ref: '#/components/parameters/ImgId'
    responses:
      200:
        description: The log
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ReviewLog'}
            examples:
              sample: {$ref: '#/components/examples/ReviewLog'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/ImageNotFound'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    entries = reviews.review_log(img_id)
    return jsonify(
        ReviewLogSchema().dump({"img_unique_id": img_id, "total": len(entries), "entries": entries})
    )
