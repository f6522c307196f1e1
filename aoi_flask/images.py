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
    dump_review,
    load_or_400,
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
    parameters:
      - $ref: '#/components/parameters/Page'
      - $ref: '#/components/parameters/Limit'
      - $ref: '#/components/parameters/StartDate'
      - $ref: '#/components/parameters/EndDate'
      - $ref: '#/components/parameters/ClassName'
      - $ref: '#/components/parameters/BatchFilter'
      - $ref: '#/components/parameters/LotFilter'
      - $ref: '#/components/parameters/WaferFilter'
      - $ref: '#/components/parameters/ToolFilter'
      - $ref: '#/components/parameters/RecipeFilter'
      - $ref: '#/components/parameters/LayerFilter'
      - $ref: '#/components/parameters/OperatorFilter'
      - $ref: '#/components/parameters/ReviewedFilter'
      - name: sort
        in: query
        description: Order of the rows
        schema:
          type: string
          enum: [newest, oldest, most_defects, fewest_defects]
          default: newest
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
    options = load_or_400(ImageListSchema(), request.args)
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

    Each float is returned exactly as the model sent it.
    ---
    tags: [images]
    operationId: get_regions
    parameters:
      - $ref: '#/components/parameters/ImgId'
      - $ref: '#/components/parameters/ClassName'
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
    options = load_or_400(RegionFilterSchema(), request.args)
    results.get_image(img_id)
    body = dump_regions(img_id, results.regions_of(img_id, options["class_name"]))
    # Each region carries its review beside the model's values (issue #16).
    found = reviews.reviews_of_image(img_id)
    for item in body["classes"]:
        for region in item["regions"]:
            region["review"] = dump_review(found.get(region["region_unique_id"]))
    return jsonify(body)


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
    parameters:
      - $ref: '#/components/parameters/ClassName'
      - $ref: '#/components/parameters/StartDate'
      - $ref: '#/components/parameters/EndDate'
      - name: min_area
        in: query
        description: Smallest area_pixels
        schema: {type: number, minimum: 0}
      - name: max_area
        in: query
        description: Largest area_pixels
        schema: {type: number, minimum: 0}
      - name: min_circularity
        in: query
        description: Lowest circularity
        schema: {type: number, minimum: 0}
      - name: max_circularity
        in: query
        description: Highest circularity
        schema: {type: number, minimum: 0}
      - name: min_aspect_ratio
        in: query
        description: Lowest aspect ratio
        schema: {type: number, minimum: 0}
      - name: max_aspect_ratio
        in: query
        description: Highest aspect ratio
        schema: {type: number, minimum: 0}
      - name: batch_id
        in: query
        description: Only regions of images of this batch
        schema: {type: string, maxLength: 64}
      - name: img_unique_id
        in: query
        description: Only regions of this image
        schema: {type: string, maxLength: 255}
        example: 20260224_173819_AB12CD
      - $ref: '#/components/parameters/LotFilter'
      - $ref: '#/components/parameters/WaferFilter'
      - $ref: '#/components/parameters/ToolFilter'
      - $ref: '#/components/parameters/RecipeFilter'
      - $ref: '#/components/parameters/LayerFilter'
      - $ref: '#/components/parameters/OperatorFilter'
      - $ref: '#/components/parameters/DispositionFilter'
      - $ref: '#/components/parameters/Page'
      - $ref: '#/components/parameters/Limit'
      - name: sort
        in: query
        description: Order of the rows
        schema:
          type: string
          enum: [newest, oldest, area_desc, area_asc, circularity_desc, circularity_asc,
                 aspect_ratio_desc, aspect_ratio_asc]
          default: newest
      - name: format
        in: query
        description: "`csv` streams the rows as a CSV attachment (defects.csv)"
        schema: {type: string, enum: [json, csv], default: json}
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
              region_unique_id,img_unique_id,filename,batch_id,timestamp,class_id,class_name,region_id,centroid_x,centroid_y,bbox_x,bbox_y,bbox_width,bbox_height,area_pixels,perimeter,major_axis,minor_axis,circularity,aspect_ratio
              20260224_173819_AB12CD_1_1,20260224_173819_AB12CD,segformer_input.jpeg,,2026-02-24T17:38:19Z,1,PI_Particle,1,1655.904761904762,1508.0,1653,1506,7,5,14,15.313708305358887,5.750073432922363,3.9162988662719727,0.750200171090617,1.4682417326326294
      400: {$ref: '#/components/responses/InvalidFilter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_or_400(DefectQuerySchema(), request.args)
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
    parameters:
      - $ref: '#/components/parameters/StartDate'
      - $ref: '#/components/parameters/EndDate'
      - $ref: '#/components/parameters/LotFilter'
      - $ref: '#/components/parameters/WaferFilter'
      - $ref: '#/components/parameters/ToolFilter'
      - $ref: '#/components/parameters/RecipeFilter'
      - $ref: '#/components/parameters/LayerFilter'
      - $ref: '#/components/parameters/OperatorFilter'
      - $ref: '#/components/parameters/GroupBy'
    responses:
      200:
        description: The statistics
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Stats'}
            examples:
              sample: {$ref: '#/components/examples/Stats'}
      400: {$ref: '#/components/responses/InvalidParameter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_or_400(StatsQuerySchema(), request.args)
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
