"""Upload group: send images to the model service and store the results."""

import base64
import re

from flask import Blueprint, current_app, jsonify, request, url_for

from .errors import ApiError
from .extensions import db, services
from .schemas import (
    BatchOptionsSchema,
    ImageResultSchema,
    UploadOptionsSchema,
    batch_links,
    load_or_400,
    load_traceability_or_400,
)
from .services import batches as batch_service
from .services.results import read_analysis
from .services.storage import MB

bp = Blueprint("upload", __name__)


def upload_limit():
    return current_app.config["MAX_UPLOAD_MB"] * MB


def read_upload(file):
    # One byte over the limit is enough for the service to call it too large.
    return file.read(upload_limit() + 1)


# The filename parameter as browsers write it (WHATWG multipart/form-data): backslashes
# are literal, quotes and newlines percent-encoded. Werkzeug reads it as an RFC quoted
# string, where `\x` means `x`, which turns `C:\dir\a.png` into `C:dira.png`.
FILENAME_PARAM = re.compile(r'(?:^|;)\s*filename="((?:[^"]|"(?!\s*(?:;|$)))*)"\s*(?:;|$)')
PERCENT_ESCAPES = {"%22": '"', "%0A": "\n", "%0D": "\r", '\\"': '"'}


def submitted_filename(file):
    """The file's name as the client sent it, directory part included."""
    disposition = file.headers.get("Content-Disposition", "")
    match = FILENAME_PARAM.search(disposition)
    if match is None or "filename*=" in disposition:
        return file.filename
    name = match.group(1)
    for escaped, plain in PERCENT_ESCAPES.items():
        name = name.replace(escaped, plain)
    return name


@bp.post("/upload")
def upload_image():
    """Analyse one image and store the results.

    Send the image as multipart/form-data field `image` (curl: `-F image=@wafer.jpg`).
    Its type is checked by content (JPEG, PNG, TIFF or BMP, whatever the name), at
    most 50 MB. The agent saves the input, calls the model service, stores the three
    result images and the analysis, and answers **201** with `Location` and the
    result (PRD Example 1). Optional form fields `lot_id`, `wafer_id`, `tool_id`,
    `recipe`, `layer` and `operator` (at most 64 letters, digits, `.`, `_`, `-`;
    `operator` also spaces) are stored with the image. With `include_images=true`
    the body also carries the three PNGs as base64, like the model service's own
    answer. After any failure nothing is left behind.

    400 codes: `NO_FILE`, `EMPTY_FILENAME`, `EMPTY_FILE`, `UNSUPPORTED_FORMAT`,
    `UNDECODABLE_IMAGE`, `IMAGE_TOO_MANY_PIXELS`, `INVALID_PARAMETER`.
    ---
    tags: [upload]
    operationId: upload_image
    x-query: UploadOptions
    x-form: Traceability
    requestBody:
      required: true
      content:
        multipart/form-data:
          schema:
            type: object
            required: [image]
            properties:
              image:
                type: string
                format: binary
                description: The AOI image (JPEG, PNG, TIFF or BMP, at most 50 MB)
          encoding:
            image:
              contentType: image/jpeg, image/png, image/tiff, image/bmp
    responses:
      201:
        description: Analysed and stored
        headers:
          Location:
            description: The stored result (GET /images/{img_id})
            required: true
            schema: {type: string, format: uri}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/UploadResult'}
            examples:
              sample: {$ref: '#/components/examples/UploadResult'}
      400: {$ref: '#/components/responses/UploadRejected'}
      401: {$ref: '#/components/responses/Unauthorized'}
      413: {$ref: '#/components/responses/PayloadTooLarge'}
      500: {$ref: '#/components/responses/DatabaseError'}
      502: {$ref: '#/components/responses/ModelError'}
      503: {$ref: '#/components/responses/Unavailable'}
      504: {$ref: '#/components/responses/ModelTimeout'}
      507: {$ref: '#/components/responses/StorageError'}
    """
    # Refuse oversize bodies before the form is parsed (multipart overhead allowed).
    request.max_content_length = upload_limit() + MB
    options = load_or_400(UploadOptionsSchema(), {**request.args, **request.form})
    trace = load_traceability_or_400(request.form)
    file = request.files.get("image")
    if file is None:
        raise ApiError.of("NO_FILE")
    data = read_upload(file)
    stored = services().results.analyse_upload(data, submitted_filename(file), trace=trace)
    body = ImageResultSchema().dump(stored.image)
    body["analysis_results"] = stored.answer.analysis
    if options["include_images"]:
        for name, content in stored.answer.images.items():
            body[f"{name}_image"] = base64.b64encode(content).decode("ascii")
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for(
        "images.get_image", img_id=stored.image.img_unique_id, _external=True
    )
    return response


def read_batch_files():
    """Every `images` part, refused as a whole when there are none or too many."""
    limit = current_app.config["MAX_BATCH_FILES"]
    request.max_form_parts = limit + 100
    files = request.files.getlist("images")
    if not files:
        raise ApiError.of("NO_FILES")
    if len(files) > limit:
        raise ApiError.of(
            "TOO_MANY_FILES",
            received=len(files),
            limit=limit,
            details={"max_batch_files": limit, "received": len(files)},
        )
    return [(submitted_filename(file), read_upload(file)) for file in files]


@bp.post("/upload/batch")
def upload_batch():
    """Analyse many images: save them all first, then run them on a bounded pool.

    Send each image as a multipart/form-data field `images`, repeating the field
    (curl: `-F images=@a.jpg -F images=@b.jpg`); at most 500 files of 50 MB each.
    Every input is checked and saved before any model call; a bad file becomes a
    failed row and never fails the others. The optional traceability form fields
    (`lot_id`, `wafer_id`, `tool_id`, `recipe`, `layer`, `operator`, as for POST
    /upload) apply to every file of the batch. By default the answer waits for every
    file (200, one result per file, in order). With `async=true` it answers
    **202** right after the inputs are saved; follow `status_url`
    (GET /batches/{batch_id}) for per-file progress and fetch `download_url` for the
    ZIP. Batches share the agent's cap on concurrent model calls.
    ---
    tags: [upload]
    operationId: upload_batch
    x-query: BatchOptions
    x-form: Traceability
    requestBody:
      required: true
      content:
        multipart/form-data:
          schema:
            type: object
            required: [images]
            properties:
              images:
                type: array
                minItems: 1
                items: {type: string, format: binary}
                description: The images, one part each (JPEG, PNG, TIFF or BMP)
          encoding:
            images:
              contentType: image/jpeg, image/png, image/tiff, image/bmp
    responses:
      200:
        description: Every file finished, done or failed (`processed`, `failed`)
        content:
          application/json:
            schema: {$ref: '#/components/schemas/BatchResult'}
            examples:
              sample: {$ref: '#/components/examples/BatchResult'}
      202:
        description: "`async=true`: inputs saved, work queued"
        headers:
          Location:
            description: Progress of the batch (GET /batches/{batch_id})
            required: true
            schema: {type: string, format: uri}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/BatchAccepted'}
            examples:
              sample: {$ref: '#/components/examples/BatchAccepted'}
      400: {$ref: '#/components/responses/BatchRejected'}
      401: {$ref: '#/components/responses/Unauthorized'}
      413: {$ref: '#/components/responses/PayloadTooLarge'}
      500: {$ref: '#/components/responses/DatabaseError'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_or_400(BatchOptionsSchema(), {**request.args, **request.form})
    trace = load_traceability_or_400(request.form)
    files = read_batch_files()
    svc = services()
    batch = batch_service.create_batch(svc.results, files, trace=trace)
    queued = batch_service.queued_item_ids(batch.batch_id)
    futures = svc.batches.submit(queued)
    links = batch_links(batch.batch_id)
    if options["async_"]:
        body = {
            "success": True,
            "batch_id": batch.batch_id,
            "status": "queued" if queued else "failed",
            "total_images": batch.total_files,
            "accepted": len(queued),
            "rejected": batch.total_files - len(queued),
            **links,
            "results": [accepted_row(item) for item in batch.items],
        }
        return jsonify(body), 202, {"Location": links["status_url"]}
    for future in futures:
        future.result()
    return jsonify(sync_summary(batch.batch_id, links))


def sync_summary(batch_id, links):
    """The reference-compatible answer of a batch that was waited for."""
    # End this request's read transaction: under REPEATABLE READ (MariaDB) it would
    # not see what the workers committed meanwhile.
    db.session.commit()
    batch = batch_service.get_batch(batch_id)
    storage = services().storage
    images = batch_service.images_of(
        [item.img_unique_id for item in batch.items if item.state == "done"]
    )
    results = []
    for item in batch.items:
        image = images.get(item.img_unique_id) if item.state == "done" else None
        if image is None:
            row = failed_row(item)
        else:
            row = ImageResultSchema().dump(image)
            row["analysis_results"] = read_analysis(storage, image)
        results.append({"file_index": item.file_index, **row})
    done = [row for row in results if row["success"]]
    return {
        "success": True,
        "batch_id": batch.batch_id,
        "status": batch_service.progress_from_items(batch).status,
        "total_images": batch.total_files,
        "processed": len(done),
        "failed": len(results) - len(done),
        "total_processing_time": round(sum(r["processing_time_seconds"] for r in done), 4),
        **links,
        "results": results,
    }


def failed_row(item):
    return {
        "filename": item.filename,
        "success": False,
        "error": item.error_message,
        "code": item.error_code,
    }


def accepted_row(item):
    row = {"file_index": item.file_index, "filename": item.filename, "state": item.state}
    if item.state == "failed":
        row.update(failed_row(item))
    return row
