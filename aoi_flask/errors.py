"""One JSON error shape for every failure:
`{"success": false, "error": "...", "code": "UPPER_SNAKE", "details": {...}}`
(`details` always present, `{}` when there is nothing more).

Every message is written once, in CATALOGUE; code raises `ApiError.of(name, **values)`
(or a subclass's `.of`). ERROR_RESPONSES groups the entries into the documented error
answers of /apispec.json, whose examples are the same messages (aoi_flask/samples.py)."""

import logging
from dataclasses import dataclass, field

from flask import jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


HOW_TO_SEND = (
    "Send it in the X-API-Key header (curl -H 'X-API-Key: <key>') or as "
    "'Authorization: Bearer <key>'."
)
AUTHENTICATE = 'Bearer realm="AOI Inference Agent"'  # the WWW-Authenticate of a 401
DB_DOWN = "The database is not reachable right now"
CHECK_DB = "Try again in a moment; if it persists, check the database server (see /health)."


@dataclass(frozen=True)
class ErrorEntry:
    """One documented failure: its HTTP status, its message (a str.format template)
    and, for /apispec.json, a summary and the values and details of its example (ids
    and the model service URL default to the sample's; string details are templates)."""

    status: int
    message: str
    summary: str
    example: dict = field(default_factory=dict)
    details: dict | None = None
    code: str | None = None  # when several messages share one code


# Every error message of the API, by name (= its code unless `code` says otherwise).
CATALOGUE = {
    "INVALID_PARAMETER": ErrorEntry(
        400,
        "Invalid request parameters — {fields}",
        "A bad parameter (examples: BadInput below)",
    ),
    "UNKNOWN_PARAMETER": ErrorEntry(
        400,
        "Unknown query parameter{plural} {names}{hints}. This endpoint accepts: {allowed}. "
        "Fix the spelling or leave the parameter out.",
        "A query parameter the endpoint does not know (a typo would otherwise be ignored)",
        {
            "plural": "",
            "names": "'clas_name'",
            "hints": " (did you mean class_name?)",
            "allowed": "class_name, limit, page",
        },
        {"unknown": ["clas_name"], "allowed": ["class_name", "limit", "page"]},
        code="INVALID_PARAMETER",
    ),
    "NO_FILE": ErrorEntry(
        400,
        "No file in field 'image'. Send the image as multipart/form-data field 'image' "
        "(curl: -F image=@wafer.jpg).",
        "No file in the form",
    ),
    "EMPTY_FILENAME": ErrorEntry(
        400,
        "The uploaded file has no name. Choose a file (curl: -F image=@wafer.jpg).",
        "A file part without a name",
    ),
    "EMPTY_FILE": ErrorEntry(
        400, "The file is empty (0 bytes). Choose a non-empty image file.", "An empty file"
    ),
    "UNSUPPORTED_FORMAT": ErrorEntry(
        400,
        "The file is not a {supported} image (checked by its content, not its name). "
        "Export the image in one of these formats and upload it again.",
        "Not an image",
        {"supported": "JPEG, PNG, TIFF or BMP"},
    ),
    "IMAGE_TOO_MANY_PIXELS": ErrorEntry(
        400,
        "The image has {width}x{height} pixels, more than the limit of {limit:,}; it may be "
        "a decompression bomb. Upload the image at its normal resolution.",
        "A decompression bomb",
        {"width": 20000, "height": 20000, "limit": 178956970},
    ),
    "UNDECODABLE_IMAGE": ErrorEntry(
        400,
        "The {format} file could not be decoded ({reason}). It is corrupt or truncated; "
        "upload the original file again.",
        "A truncated file",
        {"format": "PNG", "reason": "image file is truncated"},
    ),
    "NO_FILES": ErrorEntry(
        400,
        "No files in field 'images'. Send each image as a multipart/form-data field "
        "'images' (curl: -F images=@a.jpg -F images=@b.jpg).",
        "No file in the form",
    ),
    "TOO_MANY_FILES": ErrorEntry(
        400,
        "{received} files sent; a batch takes at most {limit}. Split it into several batches.",
        "Over the per-batch limit",
        {"received": 501, "limit": 500},
        {"max_batch_files": 500, "received": 501},
    ),
    "INVALID_BODY": ErrorEntry(
        400,
        "Send a JSON object (Content-Type: application/json), e.g. {example}.",
        "The body is not a JSON object",
        {"example": '{"disposition": "false_call"}'},
    ),
    "AUTH_REQUIRED": ErrorEntry(
        401,
        f"This endpoint needs an API key. {HOW_TO_SEND} Ask the administrator for a key.",
        "No key sent",
    ),
    "AUTH_INVALID": ErrorEntry(
        401,
        "The API key is not valid. Check it for typos or ask the administrator for a "
        f"current key. {HOW_TO_SEND}",
        "Wrong key",
    ),
    "SIGNATURE_INVALID": ErrorEntry(
        403,
        "The link's signature is not valid (it was changed, or it belongs to another file). "
        "Get a fresh link from the API (e.g. GET /images/<id>), or send your API key "
        f"instead. {HOW_TO_SEND}",
        "A changed link",
    ),
    "SIGNATURE_EXPIRED": ErrorEntry(
        403,
        "This download link has expired. Get a fresh link from the API (e.g. GET "
        "/images/<id> or GET /batches/<id>), or send your API key instead.",
        "An old link",
        details={"expired_at": 1771958340},
    ),
    "NOT_FOUND": ErrorEntry(
        404, "No such endpoint. See /apidocs for the list of endpoints.", "Unknown path"
    ),
    "IMAGE_NOT_FOUND": ErrorEntry(
        404,
        "No image with id {img_id!r}. Check the id, or list images with GET /images.",
        "Unknown id",
    ),
    "BATCH_NOT_FOUND": ErrorEntry(
        404,
        "No batch with id {batch_id!r}. List batches with GET /batches.",
        "Unknown id",
    ),
    "REGION_NOT_FOUND": ErrorEntry(
        404,
        "Image {img_id} has no region {regions}. List its regions with "
        "GET /images/{img_id}/regions; nothing was changed.",
        "A region of another image, or none",
        {"regions": "'20260224_173819_AB12CD_9_9'"},
        {"missing": ["20260224_173819_AB12CD_9_9"]},
    ),
    "FILE_MISSING": ErrorEntry(
        404,
        "The {kind} file of image {img_id} is missing from storage. Run `flask aoi fsck` "
        "or ask the administrator to restore it from backup.",
        "The file was removed from disk",
        {"kind": "overlay"},
    ),
    "METHOD_NOT_ALLOWED": ErrorEntry(
        405, "This HTTP method is not allowed here. See /apidocs.", "Wrong method"
    ),
    "IMAGES_PURGED": ErrorEntry(
        410,
        "images purged by retention on {when}: the input and result files of image "
        "{img_id} were deleted to free space. Its classes and regions are still available "
        "(GET /images/{img_id}/regions).",
        "Files deleted by retention",
        {"when": "2026-05-25T02:00:00Z"},
        {"img_unique_id": "{img_id}", "purged_at": "{when}"},
    ),
    "FILE_TOO_LARGE": ErrorEntry(
        413,
        "{name} is larger than {limit} MB. Reduce its size, then upload again.",
        "A file over the per-file limit",
        {"name": "wafer.tif", "limit": 50},
    ),
    "FILE_TOO_LARGE_FOR_MODEL": ErrorEntry(
        413,
        "{name} ({file_bytes:,} bytes) cannot be sent to the model service: with the upload "
        "form's headers the request would be {request_bytes:,} bytes, over the service's "
        "limit of {model_max_body_bytes:,} bytes (AOI_MODEL_MAX_BODY_MB). Reduce the file to "
        "at most {max_file_bytes:,} bytes (e.g. save it as a compressed PNG or a JPEG), then "
        "upload again.",
        "A file the model service would refuse (its limit includes the form's headers)",
        {
            "name": "wafer.bmp",
            "file_bytes": 52428800,
            "request_bytes": 52428988,
            "model_max_body_bytes": 52428800,
            "max_file_bytes": 52428612,
        },
        {
            "file_bytes": 52428800,
            "request_bytes": 52428988,
            "model_max_body_bytes": 52428800,
            "max_file_bytes": 52428612,
        },
    ),
    "PAYLOAD_TOO_LARGE": ErrorEntry(
        413,
        "The request body is too large. Send files of at most {limit} MB each.",
        "The request body over the limit",
        {"limit": 50},
    ),
    "INTERNAL_ERROR": ErrorEntry(
        500,
        "Unexpected server error; nothing was stored. Try again, and if it persists, "
        "send the agent's log line for this request to the administrator.",
        "A bug",
    ),
    "DATABASE_ERROR": ErrorEntry(
        500,
        "The database refused the write; nothing was stored. Try again; if it persists, "
        "report it with the time of the request.",
        "Write refused",
    ),
    "MODEL_BAD_RESPONSE": ErrorEntry(
        502,
        "The model service sent an answer the agent cannot use: {reason}. Nothing was "
        "stored. Try again; if it persists, check the model service.",
        "A malformed answer",
        {"reason": "the answer is not a JSON object"},
        {"reason": "the answer is not a JSON object"},
    ),
    "MODEL_ERROR": ErrorEntry(
        502,
        "The model service answered HTTP {status}: {message}. Check the image, or the "
        "model service's log if it persists.",
        "The model failed",
        {"status": 500, "message": "no message"},
        {"model_status": 500, "model_service_error": ""},
    ),
    "MODEL_UNAVAILABLE": ErrorEntry(
        503,
        "The model service at {url} cannot be reached (after {attempts} attempt(s)). Check "
        "that it is running and that AOI_MODEL_SERVICE_URL points to it, then try again.",
        "The model service is unreachable",
        {"attempts": 3},
        {"model_service_url": "{url}", "reason": "ConnectionError"},
    ),
    "MODEL_BREAKER_OPEN": ErrorEntry(
        503,
        "The model service at {url} failed {threshold} times in a row (connection errors "
        "or timeouts); the agent stops calling it for {cooldown:g} s. Try again in "
        "{retry_in} s; queries and downloads keep working meanwhile.",
        "The circuit breaker is open after failures in a row",
        {"threshold": 3, "cooldown": 15, "retry_in": 12},
        {"model_service_url": "{url}", "breaker": "open"},
        code="MODEL_UNAVAILABLE",
    ),
    "MODEL_NOT_LOADED": ErrorEntry(
        503,
        "The model service has no model loaded (it may be starting or switching models). "
        "Try again in a minute.",
        "No model loaded",
        details={"model_service_error": "模型尚未載入"},
    ),
    "MODEL_BUSY": ErrorEntry(
        503,
        "All {limit} model slots are busy. Try again shortly, or send many images as one "
        "batch (POST /upload/batch), which queues them.",
        "All model slots busy",
        {"limit": 4},
    ),
    "REDIS_UNAVAILABLE": ErrorEntry(
        503,
        "The cluster's model-slot store (Redis) is not reachable ({reason}); nothing was "
        "stored. Try again in a moment; if it persists, check Redis (AOI_REDIS_URL, /health).",
        "Distributed mode: Redis is down",
        {"reason": "Error 111 connecting to 127.0.0.1:6379. Connection refused."},
    ),
    "DATABASE_UNAVAILABLE": ErrorEntry(503, f"{DB_DOWN}. {CHECK_DB}", "The database is down"),
    "DATABASE_LOST_WRITE": ErrorEntry(
        503,
        f"{DB_DOWN}; nothing was stored. {CHECK_DB}",
        "The database went down during a write",
        code="DATABASE_UNAVAILABLE",
    ),
    "MODEL_TIMEOUT": ErrorEntry(
        504,
        "The model service did not answer within {seconds:g} s (after {attempts} "
        "attempt(s)). It may be overloaded; try again later or raise AOI_MODEL_READ_TIMEOUT.",
        "A read timeout",
        {"seconds": 120, "attempts": 3},
        {"model_service_url": "{url}"},
    ),
    "STORAGE_ERROR": ErrorEntry(
        507,
        "Files could not be written to disk ({reason}). Check free space and permissions "
        "of the storage folder; nothing was stored.",
        "The disk is full",
        {"reason": "No space left on device"},
    ),
}


@dataclass(frozen=True)
class BadInput:
    """An INVALID_PARAMETER example: what the real validation answers `data`."""

    summary: str
    schema: str  # its name in aoi_flask/schemas.py
    data: dict


@dataclass(frozen=True)
class ErrorAnswer:
    """A documented error answer (components.responses of /apispec.json)."""

    description: str
    cases: tuple  # CATALOGUE names and BadInputs, one example each
    headers: dict = field(default_factory=dict)


NOTHING_STORED = "; nothing was stored"
BAD_QUERY = "Bad query parameter: the message names each field and the accepted values"
BAD_PAGE = BadInput("A parameter out of range", "PageSchema", {"page": "0"})
BAD_TRACE = BadInput("A bad traceability value", "TraceabilitySchema", {"lot_id": "LOT 7/B"})
RETRY = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
# The views' docstrings refer to these by name: `400: {$ref: '#/components/responses/...'}`.
ERROR_RESPONSES = {
    "InvalidParameter": ErrorAnswer(BAD_QUERY, (BAD_PAGE, "UNKNOWN_PARAMETER")),
    "InvalidFilter": ErrorAnswer(
        BAD_QUERY,
        (
            "UNKNOWN_PARAMETER",
            BAD_PAGE,
            BadInput("An unknown class name", "RegionFilterSchema", {"class_name": "x"}),
        ),
    ),
    "UploadRejected": ErrorAnswer(
        "The upload was refused" + NOTHING_STORED,
        ("NO_FILE", "EMPTY_FILENAME", "EMPTY_FILE", "UNSUPPORTED_FORMAT", "UNDECODABLE_IMAGE")
        + ("IMAGE_TOO_MANY_PIXELS",)
        + (BadInput("A bad option", "UploadOptionsSchema", {"include_images": "maybe"}), BAD_TRACE),
    ),
    "BatchRejected": ErrorAnswer(
        "The batch was refused as a whole" + NOTHING_STORED,
        (
            "NO_FILES",
            "TOO_MANY_FILES",
            BadInput("A bad option", "BatchOptionsSchema", {"async": "?"}),
            BAD_TRACE,
        ),
    ),
    "ReviewRejected": ErrorAnswer(
        "The review was refused; nothing was changed",
        (
            "INVALID_BODY",
            BadInput("An unknown disposition", "RegionDispositionSchema", {"disposition": "ok"}),
            BadInput(
                "A corrected class on a false call",
                "RegionDispositionSchema",
                {"disposition": "false_call", "reviewer_class_name": "PI_Particle"},
            ),
        ),
    ),
    "ImageReviewRejected": ErrorAnswer(
        "The review was refused; nothing was changed",
        ("INVALID_BODY", BadInput("Nothing to do", "ImageReviewSchema", {"regions": []})),
    ),
    "Unauthorized": ErrorAnswer(
        "API keys are configured and the request carries no valid one",
        ("AUTH_REQUIRED", "AUTH_INVALID"),
        {
            "WWW-Authenticate": {
                "description": f"The scheme: `{AUTHENTICATE}`",
                "schema": {"type": "string"},
            }
        },
    ),
    "SignatureInvalid": ErrorAnswer(
        "The link's signature is wrong or expired (and no valid API key was sent)",
        ("SIGNATURE_INVALID", "SIGNATURE_EXPIRED"),
    ),
    "ImageNotFound": ErrorAnswer("No image with this id", ("IMAGE_NOT_FOUND",)),
    "BatchNotFound": ErrorAnswer("No batch with this id", ("BATCH_NOT_FOUND",)),
    "RegionNotFound": ErrorAnswer(
        "No image with this id, or a region that is not one of its own",
        ("IMAGE_NOT_FOUND", "REGION_NOT_FOUND"),
    ),
    "FileNotFound": ErrorAnswer(
        "No image with this id, or its file is gone from storage",
        ("IMAGE_NOT_FOUND", "FILE_MISSING"),
    ),
    "ImagesPurged": ErrorAnswer(
        "Retention purged the image's files (`flask aoi cleanup`); its rows stay readable",
        ("IMAGES_PURGED",),
    ),
    "PayloadTooLarge": ErrorAnswer(
        "A file, or the whole request, is over the size limit" + NOTHING_STORED,
        ("FILE_TOO_LARGE", "FILE_TOO_LARGE_FOR_MODEL", "PAYLOAD_TOO_LARGE"),
    ),
    "DatabaseError": ErrorAnswer(
        "The database refused the write" + NOTHING_STORED, ("DATABASE_ERROR",)
    ),
    "ModelError": ErrorAnswer(
        "The model service answered an error or something unusable" + NOTHING_STORED,
        ("MODEL_BAD_RESPONSE", "MODEL_ERROR"),
    ),
    "Unavailable": ErrorAnswer(
        "The model service is unreachable or has no model loaded, every model slot is busy, "
        "the database (or, in distributed mode, Redis) is down; nothing was stored. Try again "
        "after Retry-After seconds.",
        ("MODEL_UNAVAILABLE", "MODEL_BREAKER_OPEN", "MODEL_NOT_LOADED", "MODEL_BUSY")
        + ("DATABASE_LOST_WRITE", "REDIS_UNAVAILABLE"),
        RETRY,
    ),
    "DatabaseUnavailable": ErrorAnswer(
        "The database is not reachable (writes store nothing); try again after Retry-After "
        "seconds. The agent reconnects by itself.",
        ("DATABASE_UNAVAILABLE", "DATABASE_LOST_WRITE"),
        RETRY,
    ),
    "ModelTimeout": ErrorAnswer(
        "The model service did not answer in time" + NOTHING_STORED, ("MODEL_TIMEOUT",)
    ),
    "StorageError": ErrorAnswer(
        "Result files could not be written to disk" + NOTHING_STORED, ("STORAGE_ERROR",)
    ),
}


def message(name, /, **values):
    return CATALOGUE[name].message.format(**values)


def code_of(name):
    return CATALOGUE[name].code or name


class ApiError(Exception):
    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message, *, code=None, status=None, details=None, headers=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = headers or {}

    @classmethod
    def of(cls, name, /, *, details=None, headers=None, **values):
        """The catalogue's error `name`, its message filled with `values`."""
        return cls(
            message(name, **values),
            code=code_of(name),
            status=CATALOGUE[name].status,
            details=details,
            headers=headers,
        )


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class PayloadTooLarge(ApiError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailable(ApiError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


HTTP_ERRORS = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


def error_response(status, code, message, details=None, headers=None):
    # `details` is always there ({} when there is nothing more to say): one shape to parse.
    body = {"success": False, "error": message, "code": code, "details": details or {}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = str(value)
    return response


def handle_api_error(error):
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def handle_http_exception(error):
    from flask import current_app

    name = HTTP_ERRORS.get(error.code)
    if name:
        code, text = name, message(name, limit=current_app.config["MAX_UPLOAD_MB"])
    else:
        code, text = error.name.upper().replace(" ", "_").replace("'", ""), error.description
    headers = dict(error.get_headers()) if error.code == 405 else {}
    headers.pop("Content-Type", None)
    return error_response(error.code, code, text, headers=headers)


def handle_unexpected(error):
    log.exception("Unhandled error")
    return error_response(500, "INTERNAL_ERROR", message("INTERNAL_ERROR"))


def handle_database_down(error):
    """A query that lost its database connection (server down, connection killed):
    a clear 503 instead of a 500. The pool's pre-ping replaces the connection for
    the next request, so the agent recovers by itself."""
    from .extensions import db

    log.warning("database unavailable: %s", str(error).splitlines()[0][:300])
    try:
        db.session.rollback()
    except Exception:  # the connection is gone already
        log.debug("rollback after a database failure failed", exc_info=True)
    return error_response(
        503, "DATABASE_UNAVAILABLE", message("DATABASE_UNAVAILABLE"), headers={"Retry-After": 10}
    )


def register_errorhandlers(app):
    from sqlalchemy.exc import OperationalError

    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
