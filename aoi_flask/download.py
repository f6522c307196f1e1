"""Download group: stored inputs, result images and analysis JSON, byte for byte."""

import json

from flask import Blueprint, Response, send_file
from zipstream import ZIP_STORED, ZipStream

from .errors import NotFound
from .exports import region_csv_chunks
from .extensions import services
from .schemas import DownloadTypeSchema, load_or_400
from .services import batches as batch_service
from .services import queries, results
from .services.imaging import disk_stem
from .services.queries import Window

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


@bp.get("/download/batch/<batch_id>")
def download_batch(batch_id):
    """A ZIP streamed while it is built: stored entries, never whole in memory."""
    from .batches import dump_batch

    batch = batch_service.get_batch(batch_id)
    summary = dump_batch(batch)
    images = batch_service.images_of([f["img_unique_id"] for f in summary["files"]])
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    storage = services().storage
    for image in images.values():
        add_image_folder(archive, storage, image)
    archive.add(json.dumps(summary, indent=2, ensure_ascii=False).encode(), "batch_summary.json")
    rows = queries.stream_regions(Window(), {"batch_id": batch_id}, sort="oldest")
    archive.add(b"".join(region_csv_chunks(rows)), "regions.csv")
    return Response(
        archive,
        mimetype="application/zip",
        headers={
            "Content-Disposition": f"attachment; filename=batch_{batch_id}.zip",
            "Content-Length": str(len(archive)),
        },
    )


def add_image_folder(archive, storage, image):
    folder = f"{image.img_unique_id}_{disk_stem(image.original_filename)}"
    for kind, relpath in stored_path(image).items():
        if kind == "thumbnail" or not relpath:
            continue
        try:
            path = storage.path(relpath)
        except FileNotFoundError:
            continue
        if path.is_file():
            name = "analysis.json" if kind == "json" else f"{kind}{path.suffix.lower()}"
            archive.add_path(str(path), f"{folder}/{name}")
