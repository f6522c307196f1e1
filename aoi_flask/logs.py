"""Logging: one root handler (text or JSON), a request id on every line, and one
access line per request (method, path, status, duration).

`AOI_LOG_FORMAT` (`text` | `json`) and `AOI_LOG_LEVEL` configure the handler.
The request id comes from a sane incoming `X-Request-ID` (at most 128 of
`A-Z a-z 0-9 . _ -`) or is generated, and is returned in the `X-Request-ID`
response header.
"""

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came in via `extra`.
STANDARD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

access_log = logging.getLogger("aoi_flask.access")


def current_request_id():
    """This request's id (created on first use); None outside a request."""
    if not has_request_context():
        return None
    if "request_id" not in g:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    return g.request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra` fields are included as they are."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners and servers swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def agent_handler():
    """The root handler this module installed, if any."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "aoi_handler", False):
            return handler
    return None


def configure_logging(app):
    """Set up the root handler once per process (create_app may run many times, as
    in the tests); later calls only apply the level and format. Then add the
    request hooks to this app."""
    level = str(app.config.get("LOG_LEVEL", "INFO")).strip().upper()
    fmt = str(app.config.get("LOG_FORMAT", "text")).strip().lower()
    if level not in LEVELS:
        raise ValueError(f"AOI_LOG_LEVEL is {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"AOI_LOG_FORMAT is {fmt!r}; use text or json")
    handler = agent_handler()
    if handler is None:
        handler = StderrHandler()
        handler.aoi_handler = True
        handler.addFilter(RequestIdFilter())
        logging.getLogger().addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.getLogger().setLevel(level)
    app.before_request(start_request)
    app.after_request(finish_request)


def start_request():
    g.request_started = time.perf_counter()
    current_request_id()


def printable(text, limit=2000):
    """Control characters escaped, so a crafted path cannot forge log lines."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def finish_request(response):
    request_id = current_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started", time.perf_counter())
    fields = {
        "request_id": request_id,
        "method": request.method,
        "path": printable(request.path),
        "status": response.status_code,
    }
    if response.is_streamed:
        # Log when the body has been sent, so the duration covers the whole stream.
        response.call_on_close(lambda: log_request(fields, started))
    else:
        log_request(fields, started)
    return response


def log_request(fields, started):
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    level = logging.WARNING if fields["status"] >= 500 else logging.INFO
    access_log.log(
        level,
        "%s %s %s %.1fms",
        fields["method"],
        fields["path"],
        fields["status"],
        duration_ms,
        extra={**fields, "duration_ms": duration_ms},
    )
