"""Download group: stored inputs, result images and analysis JSON, byte for byte."""

from flask import Blueprint, send_file

from .errors import NotFound
from .extensions import services
from .schemas import DownloadTypeSchema, load_or_400
from .services import results

bp = Blueprint("download", __name__)

MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".bmp": "image/bmp",
    ".json": "application/json",
}


def stored_path(image):
    return {
        "input": image.input_image_path,
        "combined": image.result_image_1_path,
        "mask": image.result_image_2_path,
        "overlay": image.result_image_3_path,
        "thumbnail": image.thumbnail_path,
        "json": image.analysis_json_path,
    }


def send_stored(image, kind, download_name):
    relpath = stored_path(image)[kind]
    try:
        path = services().storage.path(relpath)
        if not path.is_file():
            raise FileNotFoundError(relpath)
    except FileNotFoundError:
        raise NotFound(
            f"The {kind} file of image {image.img_unique_id} is missing from storage. "
            "Run `flask aoi fsck` or ask the administrator to restore it from backup.",
            code="FILE_MISSING",
        ) from None
    return send_file(
        path,
        mimetype=MIME_BY_SUFFIX.get(path.suffix.lower(), "application/octet-stream"),
        as_attachment=True,
        download_name=f"{download_name}{path.suffix.lower()}",
        conditional=True,
        max_age=3600,
    )


@bp.get("/download/image/<img_id>/<kind>")
def download_image(img_id, kind):
    load_or_400(DownloadTypeSchema(), {"type": kind})
    image = results.get_image(img_id)
    return send_stored(image, kind, f"{img_id}_{kind}")


@bp.get("/download/json/<img_id>")
def download_json(img_id):
    image = results.get_image(img_id)
    return send_stored(image, "json", f"{img_id}_analysis")
