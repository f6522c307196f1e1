"""Images/query group: stored results, their classes and regions."""

from flask import Blueprint, Response, jsonify, request, stream_with_context

from .exports import region_csv_chunks
from .extensions import services
from .schemas import (
    ClassRowSchema,
    DefectQuerySchema,
    HistoryImageSchema,
    ImageDetailSchema,
    ImageListSchema,
    RegionFilterSchema,
    UtcDateTime,
    WindowSchema,
    dump_region_row,
    dump_regions,
    load_or_400,
    pages,
)
from .services import queries, results

bp = Blueprint("images", __name__)


@bp.get("/images")
def list_images():
    options = load_or_400(ImageListSchema(), request.args)
    page, limit = options["page"], options["limit"]
    total, rows = queries.list_images(
        options["window"],
        class_name=options["class_name"],
        batch_id=options["batch_id"],
        sort=options["sort"],
        page=page,
        limit=limit,
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
    return jsonify(ImageDetailSchema().dump(results.get_image(img_id)))


@bp.get("/images/<img_id>/classes")
def get_classes(img_id):
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
    options = load_or_400(RegionFilterSchema(), request.args)
    results.get_image(img_id)
    return jsonify(dump_regions(img_id, results.regions_of(img_id, options["class_name"])))


@bp.delete("/images/<img_id>")
def delete_image(img_id):
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
)


@bp.get("/query/defects")
def query_defects():
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
            stream_with_context(region_csv_chunks(rows)),
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
            "regions": [dump_region_row(row) for row in rows],
        }
    )


@bp.get("/stats")
def stats():
    options = load_or_400(WindowSchema(), request.args)
    window = options["window"]
    body = queries.statistics(window)
    utc = UtcDateTime()
    for key in ("first", "last"):
        body["date_range"][key] = utc._serialize(body["date_range"][key], None, None)
    body["window"] = {
        "start_date": request.args.get("start_date"),
        "end_date": request.args.get("end_date"),
    }
    return jsonify({"success": True, **body})
