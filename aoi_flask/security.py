"""API keys, signed download links and CORS (SPEC §6).

With `AOI_API_KEYS` set, every route needs `X-API-Key: <key>` or
`Authorization: Bearer <key>`, except the open ones: /health, the API docs,
static assets and the HTML pages of the UI (they hold no data; their scripts
call the API with the key). CORS preflight requests (OPTIONS) never need a key,
since browsers send them without credentials.

The image and download URLs the API hands out carry an expiring signature
(`?expires=<unix time>&signature=<hex HMAC-SHA256>`), so `<img src>` and plain
links work without a header. A download request with a valid signature needs
no key. With no API keys configured the API is open, URLs stay unsigned, and a
warning is logged where the server starts (`startup_warnings`).

A key may carry a name (`qc-line1:KEY1,qc-line2:KEY2`); the review log records
the name of the key a change was made with (`g.api_key_name`). A plain key is
named by a short fingerprint of itself (`key-1a2b3c4d`), so logs never hold a key.
"""

import hashlib
import hmac
import logging
import math
import time
from urllib.parse import unquote, urlsplit

from flask import current_app, g, request
from flask_cors import CORS

from .errors import AUTHENTICATE, ApiError

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/apispec.json", "/docs"})
OPEN_PREFIXES = ("/apidocs", "/flasgger_static/", "/static/")
# `ui`: the HTML pages; `flasgger`: Swagger UI and its own assets.
OPEN_BLUEPRINTS = frozenset({"ui", "flasgger"})
SIGNED_BLUEPRINT = "download"
CORS_EXPOSE_HEADERS = ["Location", "Retry-After", "X-Request-ID", "Content-Disposition"]
CORS_ALLOW_HEADERS = ["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"]
MIN_KEY_LENGTH = 16
NAME_LENGTH = 64  # as stored in the review log


class AuthError(ApiError):
    status = 401
    code = "AUTH_REQUIRED"


class SignatureError(ApiError):
    status = 403
    code = "SIGNATURE_INVALID"


# ---- keys ---------------------------------------------------------------------------


def named_api_keys(app=None):
    """The configured keys as (name, key bytes); a comma-separated string is accepted
    too, and each entry may be `name:key`."""
    keys = (app or current_app).config.get("API_KEYS") or []
    if isinstance(keys, str):
        keys = keys.split(",")
    return [parse_key(entry.strip()) for entry in keys if entry and entry.strip()]


def parse_key(entry):
    name, separator, key = entry.partition(":")
    if separator and name.strip() and key.strip():
        return name.strip()[:NAME_LENGTH], key.strip().encode("utf-8")
    key = entry.encode("utf-8")
    return f"key-{hashlib.sha256(key).hexdigest()[:8]}", key


def api_keys(app=None):
    """The configured keys as bytes."""
    return [key for _, key in named_api_keys(app)]


def key_name(given, named_keys):
    """The name of the key `given` matches, or None; compared in constant time
    against every key (no early exit on a match)."""
    given = given.encode("utf-8")
    found = None
    for name, key in named_keys:
        if hmac.compare_digest(given, key) and found is None:
            found = name
    return found


def reviewer_name():
    """Who a review is logged as: the name of the request's API key, or `anonymous`
    (API open, no keys configured)."""
    return g.get("api_key_name") or "anonymous"


def presented_keys():
    """Keys the request carries: the X-API-Key header and a Bearer token."""
    found = []
    header = request.headers.get("X-API-Key", "").strip()
    if header:
        found.append(header)
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(token.strip())
    return found


def is_open():
    path = request.path
    return (
        path in OPEN_PATHS
        or path.startswith(OPEN_PREFIXES)
        or request.blueprint in OPEN_BLUEPRINTS
        or request.endpoint == "static"
    )


def check_access():
    """before_request: let the request through, or raise 401/403."""
    if request.method == "OPTIONS":  # CORS preflight: browsers send no credentials
        return None
    named_keys = named_api_keys()
    if not named_keys or is_open():
        return None
    given = presented_keys()
    for key in given:
        name = key_name(key, named_keys)
        if name:
            g.api_key_name = name
            return None
    if request.blueprint == SIGNED_BLUEPRINT and has_signature():
        verify_signature()
        return None
    if not given:
        raise AuthError.of("AUTH_REQUIRED", headers={"WWW-Authenticate": AUTHENTICATE})
    log.warning("refused an invalid API key for %s %s", request.method, request.path)
    raise AuthError.of(
        "AUTH_INVALID",
        headers={"WWW-Authenticate": f'{AUTHENTICATE}, error="invalid_token"'},
    )


# ---- signed links -----------------------------------------------------------------


def signing_key(app=None):
    """From AOI_SECRET_KEY, else derived from the API keys (so links survive restarts)."""
    app = app or current_app
    secret = app.config.get("SECRET_KEY")
    if secret:
        material = secret if isinstance(secret, bytes) else str(secret).encode("utf-8")
    else:
        material = b"\n".join(sorted(api_keys(app)))
    return hmac.new(material, b"aoi-signed-url-v1", hashlib.sha256).digest()


def signature_for(path, expires, app=None):
    message = f"{path}\n{expires}".encode()
    return hmac.new(signing_key(app), message, hashlib.sha256).hexdigest()


def sign_url(url, app=None):
    """The URL with `expires` and `signature` added. The expiry is rounded up to the
    next minute, so answers within the same minute hand out the same (cacheable) URL."""
    app = app or current_app
    ttl = int(app.config.get("SIGNED_URL_TTL", 3600))
    expires = math.ceil((time.time() + ttl) / 60) * 60
    path = unquote(urlsplit(url).path)
    signature = signature_for(path, expires, app)
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}expires={expires}&signature={signature}"


def signed_url(endpoint, url):
    """Sign download URLs while API keys are configured; anything else unchanged."""
    if endpoint.split(".", 1)[0] != SIGNED_BLUEPRINT or not api_keys():
        return url
    return sign_url(url)


def has_signature():
    return "signature" in request.args or "expires" in request.args


def verify_signature():
    expires = request.args.get("expires", "")
    given = request.args.get("signature", "")
    path = request.script_root + request.path
    if not expires.isdigit() or not hmac.compare_digest(
        given.encode("utf-8"), signature_for(path, expires).encode()
    ):
        raise SignatureError.of("SIGNATURE_INVALID")
    if int(expires) < time.time():
        raise SignatureError.of(
            "SIGNATURE_EXPIRED",
            details={"expired_at": int(expires)},
        )


# ---- CORS --------------------------------------------------------------------------


def register_cors(app):
    origins = app.config.get("CORS_ORIGINS") or []
    if isinstance(origins, str):
        origins = [origin.strip() for origin in origins.split(",") if origin.strip()]
    if not origins:
        return
    CORS(
        app,
        origins=origins,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_headers=CORS_ALLOW_HEADERS,
        methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        max_age=600,
    )
    log.info("CORS allowed for: %s", ", ".join(origins))


def startup_warnings(app):
    """Warnings about the key set-up, logged where the server starts (run.py, wsgi.py),
    not by every `flask aoi` command (they would clutter cron logs)."""
    keys = api_keys(app)
    if not keys:
        log.warning(
            "SECURITY WARNING: no API keys configured (AOI_API_KEYS is empty) - the API is "
            "OPEN to anyone who can reach this server. Set AOI_API_KEYS to require a key."
        )
    elif any(len(key) < MIN_KEY_LENGTH for key in keys):
        log.warning(
            "an API key in AOI_API_KEYS is shorter than %d characters; use long random keys "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            MIN_KEY_LENGTH,
        )


def register_security(app):
    keys = api_keys(app)
    if keys and not app.config.get("SECRET_KEY"):
        log.info("signed links use a key derived from AOI_API_KEYS (AOI_SECRET_KEY not set)")
    app.before_request(check_access)
    register_cors(app)
