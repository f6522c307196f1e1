"""API keys, signed download links and CORS (SPEC §6)."""

import hmac
import io
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import image_bytes

from aoi_flask import security

KEY = "k-3f9a1c7e5b2d8a6f4e0c9b1d"
OTHER_KEY = "k-other-7d1e9c3b5a2f8e4d6c"
ALLOWED_ORIGIN = "http://127.0.0.1:3000"
ROOT = Path(__file__).parent.parent

# Routes that stay open when keys are configured: health, API docs, static
# assets and the HTML pages of the UI. Everything else must answer 401.
OPEN_PATHS = {"/health", "/apispec.json", "/docs", "/oauth2-redirect.html"}
OPEN_PREFIXES = ("/apidocs", "/flasgger_static/", "/static/")
OPEN_BLUEPRINTS = ("ui", "flasgger")


def is_open_rule(rule):
    return (
        rule.rule in OPEN_PATHS
        or rule.rule.startswith(OPEN_PREFIXES)
        or rule.endpoint == "static"
        or rule.endpoint.split(".", 1)[0] in OPEN_BLUEPRINTS
    )


def placeholder_path(rule):
    """The rule with every variable filled in (`<int:x>` gets a number)."""

    def fill(match):
        converter = match.group(1) or ""
        return "1" if converter.startswith(("int", "float")) else "placeholder"

    return re.sub(r"<(?:([^:<>]+):)?[^<>]+>", fill, rule.rule)


def with_docs(app):
    """Flasgger's routes as create_app will register them (added here while the
    docs step is not in the factory yet)."""
    if "flasgger" not in app.blueprints:
        from flasgger import Swagger

        Swagger(
            app,
            config={
                **Swagger.DEFAULT_CONFIG,
                "specs": [{"endpoint": "apispec", "route": "/apispec.json"}],
            },
        )
        app.add_url_rule("/docs", "docs_redirect", lambda: ("", 302, {"Location": "/apidocs/"}))
    return app


@pytest.fixture
def secured(make_app):
    return make_app(API_KEYS=[KEY, OTHER_KEY])


@pytest.fixture
def anonymous(secured):
    return secured.test_client()


@pytest.fixture
def authed(secured):
    client = secured.test_client()
    client.environ_base["HTTP_X_API_KEY"] = KEY
    return client


def post_image(client, data, name="wafer.jpg", **headers):
    return client.post(
        "/upload",
        data={"image": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        headers=headers,
    )


@pytest.fixture
def stored(authed, model_service, sample_input):
    response = post_image(authed, sample_input)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def relative(url):
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == code
    return body


# ---- API keys ------------------------------------------------------------------------


def test_every_route_needs_a_key_except_the_open_ones(secured):
    """Walks the URL map, so a route added later cannot slip through unprotected."""
    app = with_docs(secured)
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        path = placeholder_path(rule)
        for method in sorted(rule.methods):
            response = client.open(path, method=method)
            checked += 1
            where = f"{method} {rule.rule} ({rule.endpoint})"
            if method == "OPTIONS" or is_open_rule(rule):
                assert response.status_code != 401, where
                continue
            assert response.status_code == 401, where
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
            if method != "HEAD":
                assert response.get_json()["code"] == "AUTH_REQUIRED", where
    assert checked > 30


def test_the_url_map_has_the_expected_protected_and_open_routes(secured):
    rules = {rule.rule: rule for rule in with_docs(secured).url_map.iter_rules()}
    for path in ("/upload", "/upload/batch", "/images", "/download/json/<img_id>", "/stats"):
        assert not is_open_rule(rules[path]), path
    for path in ("/health", "/", "/static/<path:filename>", "/apidocs/", "/apispec.json"):
        assert is_open_rule(rules[path]), path


def test_open_routes_answer_without_a_key(secured, anonymous, model_service):
    with_docs(secured)
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/static/css/app.css").status_code == 200
    assert anonymous.get("/").status_code == 200
    assert anonymous.get("/history").status_code == 200
    assert anonymous.get("/apidocs/").status_code == 200
    assert anonymous.get("/apispec.json").status_code == 200
    assert anonymous.get("/docs").status_code in (301, 302, 308)


def test_a_missing_key_gets_401_that_says_how_to_send_it(anonymous):
    response = anonymous.get("/images")
    body = assert_error(response, 401, "AUTH_REQUIRED")
    assert "X-API-Key" in body["error"] and "Bearer" in body["error"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="AOI Inference Agent"'


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": KEY + "x"},
        {"X-API-Key": KEY[:-1]},
        {"X-API-Key": "ключ-晶圓"},  # non-ASCII must not crash the comparison
    ],
)
def test_a_wrong_key_gets_401_auth_invalid(anonymous, headers):
    response = anonymous.get("/images", headers=headers)
    body = assert_error(response, 401, "AUTH_INVALID")
    assert "X-API-Key" in body["error"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert KEY not in response.get_data(as_text=True)


def test_other_authorization_schemes_count_as_missing(anonymous):
    response = anonymous.get("/images", headers={"Authorization": f"Basic {KEY}"})
    assert_error(response, 401, "AUTH_REQUIRED")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": KEY},
        {"X-API-Key": OTHER_KEY},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer   {OTHER_KEY}"},
        {"X-API-Key": "wrong", "Authorization": f"Bearer {KEY}"},
    ],
)
def test_any_configured_key_works_in_either_header(anonymous, headers):
    response = anonymous.get("/images", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_keys_are_compared_in_constant_time_against_every_key(anonymous, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    assert anonymous.get("/images", headers={"X-API-Key": KEY}).status_code == 200
    assert len(calls) == 2  # the first key matched, the second was still compared


def test_uploads_need_a_key_and_store_nothing_without_one(anonymous, storage_root):
    response = post_image(anonymous, image_bytes())
    assert_error(response, 401, "AUTH_REQUIRED")
    assert list((storage_root / "uploads").rglob("*.*")) == []


def test_a_comma_separated_string_of_keys_works(make_app):
    client = make_app(API_KEYS=f"{KEY}, {OTHER_KEY}").test_client()
    assert client.get("/images", headers={"X-API-Key": OTHER_KEY}).status_code == 200
    assert client.get("/images").status_code == 401


def startup_messages(app, caplog):
    with caplog.at_level(logging.WARNING, logger="aoi_flask.security"):
        security.startup_warnings(app)
    return [r.getMessage() for r in caplog.records]


def test_without_keys_the_api_is_open_and_a_warning_is_logged_at_start(make_app, caplog):
    app = make_app()
    assert any("AOI_API_KEYS" in m for m in startup_messages(app, caplog))
    assert app.test_client().get("/images").status_code == 200


def test_no_open_warning_when_keys_are_set(make_app, caplog):
    assert not any("OPEN" in m for m in startup_messages(make_app(API_KEYS=[KEY]), caplog))


def test_short_keys_are_warned_about(make_app, caplog):
    assert any("shorter than" in m for m in startup_messages(make_app(API_KEYS=["short"]), caplog))


def test_building_the_app_warns_nothing(make_app, caplog):
    """`flask aoi …` commands build the app too; cron logs stay free of the warning."""
    with caplog.at_level(logging.WARNING, logger="aoi_flask.security"):
        make_app()
        make_app(API_KEYS=["short"])
    assert caplog.records == []


def run_python(code, tmp_path, *args):
    env = {
        **os.environ,
        "AOI_DATABASE_URL": f"sqlite:///{tmp_path}/agent.sqlite3",
        "AOI_STORAGE_ROOT": str(tmp_path / "data"),
        "AOI_API_KEYS": "",
    }
    env.pop("FLASK_RUN_FROM_CLI", None)
    command = [sys.executable, *(["-c", code] if code else []), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_flask_aoi_commands_do_not_print_the_security_warning(tmp_path):
    result = run_python(None, tmp_path, "-m", "flask", "--app", "wsgi", "aoi", "--help")
    assert result.returncode == 0, result.stderr
    assert "SECURITY WARNING" not in result.stdout + result.stderr


def test_the_wsgi_entry_point_prints_the_security_warning(tmp_path):
    result = run_python("import wsgi", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SECURITY WARNING" in result.stdout + result.stderr


def test_unknown_routes_need_a_key_too(anonymous, authed):
    assert anonymous.get("/no/such/route").status_code == 401
    assert_error(authed.get("/no/such/route"), 404, "NOT_FOUND")


# ---- signed links ----------------------------------------------------------------------


def signed_urls(body):
    return [*body["images"].values(), body["json_url"]]


def test_urls_the_api_hands_out_are_signed(stored, secured):
    now = time.time()
    ttl = secured.config["SIGNED_URL_TTL"]
    assert ttl == 3600
    for url in signed_urls(stored):
        query = parse_qs(urlsplit(url).query)
        assert set(query) == {"expires", "signature"}, url
        assert now + ttl <= int(query["expires"][0]) <= now + ttl + 61
        assert re.fullmatch(r"[0-9a-f]{64}", query["signature"][0])


def test_signature_is_hmac_sha256_of_path_and_expires(stored, secured):
    url = stored["json_url"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    with secured.app_context():
        key = security.signing_key()
    import hashlib

    expected = hmac.new(
        key, f"{parts.path}\n{query['expires'][0]}".encode(), hashlib.sha256
    ).hexdigest()
    assert query["signature"][0] == expected


def test_signed_links_work_without_a_key(stored, anonymous, sample_input):
    for url in signed_urls(stored):
        response = anonymous.get(relative(url))
        assert response.status_code == 200, (url, response.get_data(as_text=True))
    assert anonymous.get(relative(stored["images"]["input"])).data == sample_input


def test_detail_and_history_hand_out_signed_links(stored, authed, anonymous):
    img_id = stored["img_unique_id"]
    detail = authed.get(f"/images/{img_id}").get_json()
    assert anonymous.get(relative(detail["images"]["mask"])).status_code == 200
    listed = authed.get("/images").get_json()["images"][0]
    assert anonymous.get(relative(listed["thumbnail_url"])).status_code == 200
    # JSON API links (not downloads) are not signed: they need the key.
    assert "signature" not in listed["detail_url"]
    assert anonymous.get(relative(listed["detail_url"])).status_code == 401


def test_batch_download_link_is_signed(authed, anonymous, model_service, sample_input):
    response = authed.post(
        "/upload/batch",
        data={"images": [(io.BytesIO(sample_input), "a.jpg")]},
        content_type="multipart/form-data",
    )
    body = response.get_json()
    assert "signature=" in body["download_url"]
    assert "signature=" not in body["status_url"]
    zipped = anonymous.get(relative(body["download_url"]))
    assert zipped.status_code == 200
    assert zipped.data[:2] == b"PK"
    assert "signature=" in body["results"][0]["json_url"]


def tamper(url, **changes):
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_a_tampered_signature_is_refused(stored, anonymous):
    url = stored["images"]["input"]
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    body = assert_error(anonymous.get(tamper(url, signature=flipped)), 403, "SIGNATURE_INVALID")
    assert "fresh link" in body["error"]
    assert_error(anonymous.get(tamper(url, signature="")), 403, "SIGNATURE_INVALID")
    assert_error(anonymous.get(tamper(url, signature="zz")), 403, "SIGNATURE_INVALID")


def test_a_longer_lifetime_cannot_be_forged(stored, anonymous):
    url = stored["images"]["input"]
    forged = tamper(url, expires=str(int(time.time()) + 10**8))
    assert_error(anonymous.get(forged), 403, "SIGNATURE_INVALID")
    assert_error(anonymous.get(tamper(url, expires="abc")), 403, "SIGNATURE_INVALID")


def test_a_signature_only_opens_its_own_path(stored, anonymous):
    input_url, mask_url = stored["images"]["input"], stored["images"]["mask"]
    stolen = urlsplit(input_url).query
    assert_error(anonymous.get(f"{urlsplit(mask_url).path}?{stolen}"), 403, "SIGNATURE_INVALID")


def test_signatures_do_not_open_json_api_routes(stored, anonymous):
    query = urlsplit(stored["json_url"]).query
    response = anonymous.get(f"/images/{stored['img_unique_id']}?{query}")
    assert_error(response, 401, "AUTH_REQUIRED")


def test_an_expired_link_is_refused_with_a_clear_message(stored, secured, anonymous):
    path = urlsplit(stored["images"]["overlay"]).path
    expired = int(time.time()) - 5
    with secured.app_context():
        signature = security.signature_for(path, expired)
    response = anonymous.get(f"{path}?expires={expired}&signature={signature}")
    body = assert_error(response, 403, "SIGNATURE_EXPIRED")
    assert "expired" in body["error"] and "fresh link" in body["error"]
    assert body["details"]["expired_at"] == expired


def test_a_valid_key_still_works_with_an_old_link(stored, secured, authed):
    path = urlsplit(stored["images"]["overlay"]).path
    assert authed.get(f"{path}?expires=1&signature=bad").status_code == 200


def test_signed_links_survive_a_restart(stored, secured, make_app):
    restarted = make_app(
        API_KEYS=[OTHER_KEY, KEY],  # same keys, another order
        SQLALCHEMY_DATABASE_URI=secured.config["SQLALCHEMY_DATABASE_URI"],
    )
    response = restarted.test_client().get(relative(stored["json_url"]))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_secret_key_signs_instead_of_the_api_keys(make_app):
    derived = make_app(API_KEYS=[KEY])
    secret = make_app(API_KEYS=[KEY], SECRET_KEY="a-long-random-secret-for-links")
    with derived.app_context():
        derived_key = security.signing_key()
    with secret.app_context():
        secret_key = security.signing_key()
    assert derived_key != secret_key
    assert KEY.encode() not in secret_key and KEY.encode() not in derived_key


def test_signed_url_ttl_is_configurable(make_app, model_service, sample_input):
    app = make_app(API_KEYS=[KEY], SIGNED_URL_TTL=120)
    body = post_image(app.test_client(), sample_input, **{"X-API-Key": KEY}).get_json()
    expires = int(parse_qs(urlsplit(body["json_url"]).query)["expires"][0])
    assert time.time() + 120 <= expires <= time.time() + 181


def test_without_keys_urls_stay_plain(client, model_service, sample_input):
    body = post_image(client, sample_input).get_json()
    for url in signed_urls(body):
        assert "?" not in url
    # A stray signature on an open API is ignored.
    assert client.get(relative(body["json_url"]) + "?signature=x").status_code == 200


# ---- CORS ------------------------------------------------------------------------------


@pytest.fixture
def cors_app(make_app):
    return make_app(API_KEYS=[KEY], CORS_ORIGINS=[ALLOWED_ORIGIN])


def test_cors_allows_a_configured_origin(cors_app):
    client = cors_app.test_client()
    response = client.get("/images", headers={"Origin": ALLOWED_ORIGIN, "X-API-Key": KEY})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "Retry-After", "X-Request-ID", "Content-Disposition"} <= exposed


def test_cors_preflight_works_without_a_key(cors_app):
    response = cors_app.test_client().options(
        "/upload",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_cors_errors_are_readable_by_the_allowed_origin(cors_app):
    response = cors_app.test_client().get("/images", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:3001", "null"])
def test_cors_refuses_other_origins(cors_app, origin):
    client = cors_app.test_client()
    response = client.get("/images", headers={"Origin": origin, "X-API-Key": KEY})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/upload", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_no_cors_headers_when_no_origins_are_configured(client):
    response = client.get("/images", headers={"Origin": ALLOWED_ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/upload", headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    assert "Access-Control-Allow-Origin" not in preflight.headers
