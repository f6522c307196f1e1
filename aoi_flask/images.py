"""Images/query group: stored results, their classes and regions."""

from flask import Blueprint, jsonify, request

from .extensions import services
from .schemas import (
    ClassRowSchema,
    ImageDetailSchema,
    RegionFilterSchema,
    dump_regions,
    load_or_400,
)
from .services import results

bp = Blueprint("images", __name__)


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
