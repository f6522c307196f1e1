"""Download group: stored inputs, result images and analysis JSON, byte for byte."""

import json

from flask import Blueprint, Response, request, send_file
from zipstream import ZIP_STORED, ZipStream

from .errors import NotFound
from .exports import region_csv_chunks
from .extensions import services
from .schemas import DownloadTypeSchema, SignedLinkSchema, load_or_400, load_query_or_400
from .services import batches as batch_service
from .services import queries, results, reviews
from .services.imaging import disk_stem
from .services.maintenance import refuse_if_purged
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
    refuse_if_purged(image)
    relpath = stored_path(image)[kind]
    try:
        path = services().storage.path(relpath)
        if not path.is_file():
            raise FileNotFoundError(relpath)
    except FileNotFoundError:
        raise NotFound.of("FILE_MISSING", kind=kind, img_id=image.img_unique_id) from None
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
    """One stored image file, byte for byte: the input or a result image.

    `kind` is `input` (as uploaded), `combined`, `mask`, `overlay` (PNG) or
    `thumbnail` (JPEG). The attachment is named `<img_id>_<kind>.<ext>`, with the
    right MIME type. ETag and Last-Modified allow conditional GET (304) and Range
    requests (206). The URLs in API answers are signed while API keys are
    configured, so they work without a key header.
    ---
    tags: [download]
    operationId: download_image
    parameters:
      - $ref: '#/components/parameters/ImgId'
      - $ref: '#/components/parameters/Kind'
    x-query: SignedLink
    responses:
      200:
        description: The file
        headers:
          Content-Disposition:
            description: "`attachment; filename=<img_id>_<kind>.<ext>`"
            schema: {type: string}
          ETag: {description: Entity tag for conditional GET, schema: {type: string}}
          Last-Modified: {description: Modification time, schema: {type: string}}
        content:
          image/png: {schema: {type: string, format: binary}}
          image/jpeg: {schema: {type: string, format: binary}}
          image/tiff: {schema: {type: string, format: binary}}
          image/bmp: {schema: {type: string, format: binary}}
      206:
        description: Part of the file (Range request)
        content:
          image/png: {schema: {type: string, format: binary}}
          image/jpeg: {schema: {type: string, format: binary}}
          image/tiff: {schema: {type: string, format: binary}}
          image/bmp: {schema: {type: string, format: binary}}
      304: {description: Not modified since the ETag / date the client has}
      400: {$ref: '#/components/responses/InvalidParameter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      403: {$ref: '#/components/responses/SignatureInvalid'}
      404: {$ref: '#/components/responses/FileNotFound'}
      410: {$ref: '#/components/responses/ImagesPurged'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    load_query_or_400(SignedLinkSchema(), request.args)
    load_or_400(DownloadTypeSchema(), {"type": kind})
    image = results.get_image(img_id)
    return send_stored(image, kind, f"{img_id}_{kind}")


@bp.get("/download/json/<img_id>")
def download_json(img_id):
    """The stored analysis JSON, exactly as the model service returned it.

    Attachment `<img_id>_analysis.json`; conditional GET as for image downloads.
    ---
    tags: [download]
    operationId: download_json
    parameters:
      - $ref: '#/components/parameters/ImgId'
    x-query: SignedLink
    responses:
      200:
        description: analysis.json
        headers:
          Content-Disposition:
            description: "`attachment; filename=<img_id>_analysis.json`"
            schema: {type: string}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/AnalysisResults'}
            examples:
              sample: {$ref: '#/components/examples/AnalysisResults'}
      206:
        description: Part of the file (Range request)
        content:
          application/json: {schema: {type: string, format: binary}}
      304: {description: Not modified since the ETag / date the client has}
      400: {$ref: '#/components/responses/InvalidParameter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      403: {$ref: '#/components/responses/SignatureInvalid'}
      404: {$ref: '#/components/responses/FileNotFound'}
      410: {$ref: '#/components/responses/ImagesPurged'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    load_query_or_400(SignedLinkSchema(), request.args)
    image = results.get_image(img_id)
    return send_stored(image, "json", f"{img_id}_analysis")


@bp.get("/download/batch/<batch_id>")
def download_batch(batch_id):
    """A batch as one ZIP, streamed while it is built (never whole in memory or on disk).

    One folder per stored image (`<img_id>_<name>/` with the input, combined, mask
    and overlay images and analysis.json), `batch_summary.json` (the same body as
    GET /batches/{batch_id}) and `regions.csv` (every region of the batch). Entries
    are stored, not deflated: the images are compressed already.
    ---
    tags: [download]
    operationId: download_batch
    parameters:
      - $ref: '#/components/parameters/BatchId'
    x-query: SignedLink
    responses:
      200:
        description: The ZIP
        headers:
          Content-Disposition:
            description: "`attachment; filename=batch_<batch_id>.zip`"
            schema: {type: string}
          Content-Length:
            description: Size of the whole ZIP, known before it is streamed
            schema: {type: integer}
        content:
          application/zip:
            schema: {type: string, format: binary}
      400: {$ref: '#/components/responses/InvalidParameter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      403: {$ref: '#/components/responses/SignatureInvalid'}
      404: {$ref: '#/components/responses/BatchNotFound'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    from .batches import dump_batch

    load_query_or_400(SignedLinkSchema(), request.args)
    batch = batch_service.get_batch(batch_id)
    summary = dump_batch(batch)
    images = batch_service.images_of([f["img_unique_id"] for f in summary["files"]])
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    storage = services().storage
    for image in images.values():
        add_image_folder(archive, storage, image)
    archive.add(json.dumps(summary, indent=2, ensure_ascii=False).encode(), "batch_summary.json")
    rows = queries.stream_regions(Window(), {"batch_id": batch_id}, sort="oldest")
    archive.add(b"".join(region_csv_chunks(reviews.annotated(rows))), "regions.csv")
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
