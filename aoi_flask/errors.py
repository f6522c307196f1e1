"""One JSON error shape for every failure:
`{"success": false, "error": "...", "code": "UPPER_SNAKE", "details": {...}}`
(`details` always present, `{}` when there is nothing more)."""

import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


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


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class PayloadTooLarge(ApiError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailable(ApiError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


HTTP_MESSAGES = {
    404: ("NOT_FOUND", "No such endpoint. See /apidocs for the list of endpoints."),
    405: ("METHOD_NOT_ALLOWED", "This HTTP method is not allowed here. See /apidocs."),
    413: (
        "PAYLOAD_TOO_LARGE",
        "The request body is too large. Send files of at most {limit} MB each.",
    ),
}


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

    code, message = HTTP_MESSAGES.get(
        error.code, (error.name.upper().replace(" ", "_").replace("'", ""), error.description)
    )
    message = message.format(limit=current_app.config["MAX_UPLOAD_MB"])
    headers = dict(error.get_headers()) if error.code == 405 else {}
    headers.pop("Content-Type", None)
    return error_response(error.code, code, message, headers=headers)


def handle_unexpected(error):
    log.exception("Unhandled error")
    return error_response(
        500,
        "INTERNAL_ERROR",
        "Unexpected server error; nothing was stored. Try again, and if it persists, "
        "send the agent's log line for this request to the administrator.",
    )


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
        503,
        "DATABASE_UNAVAILABLE",
        "The database is not reachable right now. Try again in a moment; if it persists, "
        "check the database server (see /health).",
        headers={"Retry-After": 10},
    )


def register_errorhandlers(app):
    from sqlalchemy.exc import OperationalError

    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
