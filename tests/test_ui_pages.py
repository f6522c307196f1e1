"""The UI's HTML pages (Flask test client): they render, every asset they use is
served by the app itself, and nothing in them points off this machine."""

import re
from pathlib import Path

import pytest
from ui_support import external_urls, fetch_assets

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
TEMPLATES = ROOT / "templates"
UNKNOWN_ID = "20990101_000000_NOSUCH"
PAGES = [
    "/",
    "/history",
    "/statistics",
    "/batches-list",
    "/batch/20990101_000000_BATCH0",
    f"/results/{UNKNOWN_ID}",
]
NAV = {
    "/": "Analyse",
    "/history": "History",
    "/batches-list": "Batches",
    "/statistics": "Statistics",
}
FOOTER = ("/health", "/apidocs", "/batches-list")
EVIL = "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_with_layout(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "AOI Inference Agent" in html
    for href, label in NAV.items():
        assert re.search(rf'<a href="{re.escape(href)}"[^>]*>.*?{label}</a>', html, re.S), label
    for href in FOOTER:
        assert f'href="{href}"' in html
    assert '<script type="module" src="/static/js/' in html
    # The policy makes the browser refuse any asset that is not the app's own.
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_is_served_by_the_app(client, path):
    seen, external = fetch_assets(client, path)
    assert external == []
    failed = {url: r.status_code for url, r in seen.items() if r.status_code != 200}
    assert failed == {}
    fetched = set(seen)
    assert "/static/css/app.css" in fetched
    assert "/static/img/favicon.svg" in fetched
    # module imports are followed: the API wrapper is reached from every page script
    assert "/static/js/api.js" in fetched and "/static/js/common.js" in fetched
    for url, response in seen.items():
        if url.endswith(".js"):
            assert "javascript" in response.mimetype, url
        if url.endswith(".css"):
            assert response.mimetype == "text/css", url


def test_all_scripts_are_used_and_nothing_is_orphaned(client):
    reached = set()
    for path in PAGES:
        seen, _ = fetch_assets(client, path)
        reached |= {url for url in seen if url.startswith("/static/")}
    on_disk = {
        f"/static/{p.relative_to(STATIC).as_posix()}" for p in STATIC.rglob("*") if p.is_file()
    }
    assert on_disk - reached == set()


def test_no_external_url_in_any_template_or_static_file():
    offenders = {}
    for folder in (TEMPLATES, STATIC):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in {".html", ".css", ".js", ".svg"}:
                found = external_urls(path.read_text(encoding="utf-8"))
                if found:
                    offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_scripts_never_write_markup_from_strings():
    """User text goes in with textContent; no innerHTML, outerHTML, insertAdjacentHTML
    or document.write anywhere in the UI's scripts."""
    pattern = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(")
    hits = {
        p.name: pattern.findall(p.read_text(encoding="utf-8"))
        for p in (STATIC / "js").glob("*.js")
        if pattern.search(p.read_text(encoding="utf-8"))
    }
    assert hits == {}


def test_no_inline_script_or_style_attribute_in_templates(client):
    for path in PAGES:
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert " style=" not in html, path


def test_unknown_result_id_renders_the_page_and_the_api_says_not_found(client):
    """The page is a shell: it renders (200) and its script shows "not found"
    because the API answers 404 for the id (checked in the browser test too)."""
    response = client.get(f"/results/{UNKNOWN_ID}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'data-img-id="{UNKNOWN_ID}"' in html
    assert 'id="result-missing" hidden' in html
    api = client.get(f"/images/{UNKNOWN_ID}")
    assert api.status_code == 404
    assert api.get_json()["code"] == "IMAGE_NOT_FOUND"


@pytest.mark.parametrize("prefix", ["/results/", "/batch/"])
def test_ids_from_the_url_are_escaped(client, prefix):
    response = client.get(prefix + "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert EVIL not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_pages_and_assets_stay_open_when_api_keys_are_required(make_app):
    client = make_app(API_KEYS=["ui-pages-test-key-0123456789"]).test_client()
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    assert client.get("/static/js/api.js").status_code == 200
    # ...while the data behind them needs the key, which the scripts send
    assert client.get("/images").status_code == 401
    keyed = client.get("/images", headers={"X-API-Key": "ui-pages-test-key-0123456789"})
    assert keyed.status_code == 200


def test_the_scanners_catch_external_references():
    """The checks above would notice a CDN link, a protocol-relative URL or a remote import."""
    from ui_support import css_refs, is_local, js_refs, parse_refs

    html = (
        '<link rel="stylesheet" href="https://cdn.example.com/fa.css">'
        '<script src="//cdn.example.com/x.js"></script><img src="/static/a.png">'
        '<a href="http://127.0.0.1:5000/health">h</a>'
    )
    parsed = parse_refs(html)
    assert [ref for ref in parsed.assets if not is_local(ref)] == [
        "https://cdn.example.com/fa.css",
        "//cdn.example.com/x.js",
    ]
    assert css_refs("a{background:url('//fonts.example.net/f.woff')} @import 'x.css';") == [
        "//fonts.example.net/f.woff",
        "x.css",
    ]
    assert js_refs('import { a } from "./api.js";\nimport "https://evil.example/m.js";') == [
        "./api.js",
        "https://evil.example/m.js",
    ]
    assert external_urls(
        'fetch("https://telemetry.example.org/x"); ns="http://www.w3.org/2000/svg"'
    ) == ["https://telemetry.example.org/x"]
    assert external_urls("see http://127.0.0.1:8080/health and http://localhost/x") == []
