"""Images/query group: stored results, their classes and regions."""

from flask import Blueprint, Response, jsonify, request, stream_with_context

from .exports import region_csv_chunks
from .extensions import services
from .models import TRACE_FIELDS
from .schemas import (
    ClassRowSchema,
    DefectQuerySchema,
    HistoryImageSchema,
    ImageDetailSchema,
    ImageListSchema,
    RegionFilterSchema,
    StatsQuerySchema,
    dump_region_row,
    dump_regions,
    load_query_or_400,
    pages,
    traceability_of,
    utc_text,
)
from .services import queries, results, reviews

bp = Blueprint("images", __name__)


@bp.get("/images")
def list_images():
    """History: stored results, newest first, filtered and paged.

    Filters combine: a time window (`start_date`, `end_date`, inclusive; a bare
    end date means the whole day), a defect class (images with at least one
    region of it), a batch, the traceability values given at upload (`lot_id`,
    `wafer_id`, `tool_id`, `recipe`, `layer`, `operator`; exact match) and the
    review mark (`reviewed=false`: images not yet marked reviewed). Each row has
    the PRD Example 2 fields plus `filename`, `batch_id`, `defect_classes`,
    `thumbnail_url`, the traceability values and the review mark.
    ---
    tags: [images]
    operationId: list_images
    x-query: ImageList
    responses:
      200:
        description: One page of images
        content:
          application/json:
            schema: {$ref: '#/components/schemas/HistoryPage'}
            examples:
              sample: {$ref: '#/components/examples/HistoryPage'}
      400: {$ref: '#/components/responses/InvalidFilter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_query_or_400(ImageListSchema(), request.args)
    page, limit = options["page"], options["limit"]
    total, rows = queries.list_images(
        options["window"],
        class_name=options["class_name"],
        batch_id=options["batch_id"],
        sort=options["sort"],
        page=page,
        limit=limit,
        trace=traceability_of(options),
        reviewed=options["reviewed"],
    )
    return jsonify(
        {
            "success": True,
            "total": total,
            "page": page,
            "limit": limit,
            "pages": pages(total, limit),
            "images": HistoryImageSchema(many=True).dump(rows),
        }
    )


@bp.get("/images/<img_id>")
def get_image(img_id):
    """One stored result: metadata, stored paths, download URLs, per-class summary.
    ---
    tags: [images]
    operationId: get_image
    parameters:
      - $ref: '#/components/parameters/ImgId'
    responses:
      200:
        description: The image
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ImageDetail'}
            examples:
              sample: {$ref: '#/components/examples/ImageDetail'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/ImageNotFound'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    return jsonify(ImageDetailSchema().dump(results.get_image(img_id)))


@bp.get("/images/<img_id>/classes")
def get_classes(img_id):
    """The four class rows of one image (PI_Particle, PR_Peeling, Copper_Nodule, Env_Particle).
    ---
    tags: [images]
    operationId: get_classes
    parameters:
      - $ref: '#/components/parameters/ImgId'
    responses:
      200:
        description: The class rows, by class id
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ClassList'}
            examples:
              sample: {$ref: '#/components/examples/ClassList'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/ImageNotFound'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    image = results.get_image(img_id)
    return jsonify(
        {
            "success": True,
            "img_unique_id": img_id,
            "classes": ClassRowSchema(many=True).dump(image.classes),
        }
    )


@bp.get("/images/<img_id>/regions")
def get_regions(img_id):
    """Every defect region of one image, grouped by class (PRD Example 3).

    Each float is returned exactly as the model sent it; each region carries its
    `review` beside the model's values.
    ---
    tags: [images]
    operationId: get_regions
    parameters:
      - $ref: '#/components/parameters/ImgId'
    x-query: RegionFilter
    responses:
      200:
        description: The regions, grouped by class
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Regions'}
            examples:
              sample: {$ref: '#/components/examples/Regions'}
      400: {$ref: '#/components/responses/InvalidFilter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/ImageNotFound'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_query_or_400(RegionFilterSchema(), request.args)
    results.get_image(img_id)
    regions = results.regions_of(img_id, options["class_name"])
    return jsonify(dump_regions(img_id, regions, reviews.reviews_of_image(img_id)))


@bp.delete("/images/<img_id>")
def delete_image(img_id):
    """Delete one stored result: its rows (classes and regions cascade) and its files.
    ---
    tags: [images]
    operationId: delete_image
    parameters:
      - $ref: '#/components/parameters/ImgId'
    responses:
      200:
        description: Deleted
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Deleted'}
            examples:
              sample: {$ref: '#/components/examples/Deleted'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/ImageNotFound'}
      500: {$ref: '#/components/responses/DatabaseError'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    services().results.delete(img_id)
    return jsonify({"success": True, "img_unique_id": img_id, "deleted": True})


REGION_FILTERS = (
    "class_name",
    "batch_id",
    "img_unique_id",
    "min_area",
    "max_area",
    "min_circularity",
    "max_circularity",
    "min_aspect_ratio",
    "max_aspect_ratio",
    "disposition",
    *TRACE_FIELDS,
)


@bp.get("/query/defects")
def query_defects():
    """Region-level search over all stored results, as JSON pages or a CSV export.

    Filters combine (AND); ranges are inclusive. The traceability filters match the
    values given at upload; `disposition` selects regions by their review
    (`unreviewed`: never given another). Each row carries its image's traceability
    values and its `review`. `format=csv` streams the same rows as CSV (with
    traceability and review columns after the reference ones); without
    `page`/`limit` the export holds every matching row.
    ---
    tags: [images]
    operationId: query_defects
    x-query: DefectQuery
    responses:
      200:
        description: One page of regions (JSON), or every matching row (CSV)
        headers:
          Content-Disposition:
            description: "`attachment; filename=defects.csv` (CSV only)"
            schema: {type: string}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/DefectPage'}
            examples:
              sample: {$ref: '#/components/examples/DefectPage'}
          text/csv:
            schema: {type: string}
            example: |
              region_unique_id,img_unique_id,filename,batch_id,timestamp,class_id,class_name,region_id,centroid_x,centroid_y,bbox_x,bbox_y,bbox_width,bbox_height,area_pixels,perimeter,major_axis,minor_axis,circularity,aspect_ratio,lot_id,wafer_id,tool_id,recipe,layer,operator,disposition,reviewer_class_name,review_comment
              20260224_173819_AB12CD_1_1,20260224_173819_AB12CD,segformer_input.jpeg,,2026-02-24T17:38:19Z,1,PI_Particle,1,1655.904761904762,1508.0,1653,1506,7,5,14,15.313708305358887,5.750073432922363,3.9162988662719727,0.750200171090617,1.4682417326326294,LOT-2026.02_A,W07,AOI-3,M1_POST_CMP,M1,chen.wei,true_defect,,
      400: {$ref: '#/components/responses/InvalidFilter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_query_or_400(DefectQuerySchema(), request.args)
    filters = {name: options[name] for name in REGION_FILTERS}
    window, sort, page, limit = (options[k] for k in ("window", "sort", "page", "limit"))
    if options["format"] == "csv":
        # Without an explicit page/limit the export holds every matching row.
        paged = "limit" in request.args or "page" in request.args
        rows = queries.stream_regions(
            window, filters, sort=sort, page=page if paged else None, limit=limit if paged else None
        )
        return Response(
            stream_with_context(region_csv_chunks(reviews.annotated(rows))),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=defects.csv"},
        )
    total, rows = queries.search_regions(window, filters, sort=sort, page=page, limit=limit)
    return jsonify(
        {
            "success": True,
            "total": total,
            "page": page,
            "limit": limit,
            "pages": pages(total, limit),
            "regions": [dump_region_row(*row) for row in reviews.annotate_chunk(rows)],
        }
    )


@bp.get("/stats")
def stats():
    """Statistics: totals, per-class counts, processing times, storage, daily trend.

    Totals of images, regions and batches; per class the images with at least one
    region, the regions and their area; processing-time mean, min and max; the
    first and last image; bytes stored; and images and defects per UTC day.
    Optionally limited to a time window and traceability values.

    `review` shows how the reviewers judge the model: reviewed regions,
    false-call and nuisance rates in total, per class, per tool, per model and per
    day, and the confusion table model class → reviewer class. `group_by`
    (`tool_id`, `lot_id`, `recipe`, `wafer_id`, `layer`, `operator`) adds `groups`:
    images, regions and review rates per value of that field.
    ---
    tags: [images]
    operationId: stats
    x-query: StatsQuery
    responses:
      200:
        description: The statistics
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Stats'}
            examples:
              sample: {$ref: '#/components/examples/Stats'}
              grouped: {$ref: '#/components/examples/StatsGrouped'}
      400: {$ref: '#/components/responses/InvalidParameter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_query_or_400(StatsQuerySchema(), request.args)
    window, trace = options["window"], traceability_of(options)
    body = queries.statistics(window, trace)
    for key in ("first", "last"):
        body["date_range"][key] = utc_text(body["date_range"][key])
    body["window"] = {
        "start_date": request.args.get("start_date"),
        "end_date": request.args.get("end_date"),
    }
    body["filters"] = trace
    body["review"] = reviews.review_statistics(window, trace)
    if options["group_by"]:
        body["group_by"] = options["group_by"]
        body["groups"] = reviews.grouped_statistics(window, trace, options["group_by"])
    return jsonify({"success": True, **body})
