"""One source of truth: /apispec.json and the running app agree.

(a) every route of the app is documented with its methods, and every documented
    operation is a route;
(b) real answers of the running app, successes and failures, are what the spec
    documents for their status code: media type, required headers, body schema
    (OpenAPI 3.0 semantics, `nullable` included).
Also: the spec is valid OpenAPI 3.0.3, every operation and answer is documented
with a schema and an example, every JSON example fits its own schema, and the
docs page loads nothing from another host.
"""

import io
import json
import re
import zipfile

import pytest
import requests
from conftest import MODEL_URL
from helpers import echo, image_bytes
from openapi_spec_validator import validate as validate_spec
from openapi_support import (
    IGNORED_METHODS,
    check_response,
    load_spec,
    openapi_path,
    operations,
    resolve,
    schema_errors,
)

from aoi_flask import apidocs, schemas
from aoi_flask.apidocs import documented
from aoi_flask.errors import CATALOGUE, ERROR_RESPONSES, code_of

TAGS = {"system", "upload", "images", "review", "batches", "download", "ui"}
KEY = "test-key-0123456789abcdef"


@pytest.fixture
def spec(client):
    return load_spec(client)


class Api:
    """Calls operations by their documented path and checks every answer."""

    def __init__(self, client, spec):
        self.client, self.spec = client, spec
        self.seen = set()  # (method, path, status)

    def __call__(self, method, path, expect, *, params=None, **kwargs):
        url = path.format(**(params or {}))
        response = self.client.open(url, method=method.upper(), **kwargs)
        assert response.status_code == expect, (
            f"{method.upper()} {url}: {response.status_code}, expected {expect}: "
            f"{response.data[:300]!r}"
        )
        body = check_response(self.spec, method, path, response)
        self.seen.add((method, path, response.status_code))
        if response.status_code >= 400 and isinstance(body, dict) and "code" in body:
            assert_from_catalogue(body)
        return response, body


def template_pattern(template):
    """A catalogue message as a regex: each `{placeholder}` matches any text (or none)."""
    parts = re.split(r"\{[^{}]*\}", template)
    return re.compile(".*".join(re.escape(part) for part in parts), re.DOTALL)


def assert_from_catalogue(body):
    """An error answer's message is one of the catalogue's, for its code."""
    templates = [e.message for name, e in CATALOGUE.items() if code_of(name) == body["code"]]
    assert templates, f"code {body['code']} is not in errors.CATALOGUE"
    assert any(template_pattern(t).fullmatch(body["error"]) for t in templates), body


@pytest.fixture
def api(client, spec):
    return Api(client, spec)


def form(**files):
    """multipart/form-data with (bytes, name) or a list of them per field."""
    data = {}
    for field, value in files.items():
        if isinstance(value, list):
            data[field] = [(io.BytesIO(content), name) for content, name in value]
        else:
            data[field] = (io.BytesIO(value[0]), value[1])
    return {"data": data, "content_type": "multipart/form-data"}


# ---- the spec itself ------------------------------------------------------------------


def test_spec_is_valid_openapi_3(spec):
    assert spec["openapi"] == "3.0.3"
    assert spec["servers"] == [{"url": "/", "description": "This agent"}]
    validate_spec(spec)


def test_every_route_is_documented_and_every_documented_path_exists(app, spec):
    routes = set()
    for rule in app.url_map.iter_rules():
        if not documented(rule):
            continue
        for method in rule.methods - IGNORED_METHODS:
            routes.add((method.lower(), openapi_path(rule.rule)))
    documented_ops = {(method, path) for method, path, _ in operations(spec)}
    assert routes - documented_ops == set(), "routes missing from /apispec.json"
    assert documented_ops - routes == set(), "documented operations the app does not have"
    assert len(documented_ops) >= 23


def test_flasgger_and_static_routes_are_left_out(app, spec):
    hidden = {openapi_path(r.rule) for r in app.url_map.iter_rules() if not documented(r)}
    assert {"/apispec.json", "/apidocs/", "/flasgger_static/{filename}"} <= hidden
    assert not hidden & set(spec["paths"])


def test_every_operation_is_fully_documented(spec):
    operation_ids = set()
    for method, path, operation in operations(spec):
        label = f"{method.upper()} {path}"
        assert operation.get("summary"), label
        assert operation.get("operationId") not in operation_ids, label
        operation_ids.add(operation.get("operationId"))
        assert len(operation.get("tags", [])) == 1 and operation["tags"][0] in TAGS, label
        declared = {p["name"] for p in resolve(operation.get("parameters", []), spec)}
        assert set(re.findall(r"{(\w+)}", path)) <= declared, f"{label}: path parameters"
        for parameter in resolve(operation.get("parameters", []), spec):
            assert parameter.get("description") and parameter.get("schema"), (label, parameter)
        assert operation["responses"], label
        for status, answer in operation["responses"].items():
            answer = resolve(answer, spec)
            assert answer.get("description"), (label, status)
            for media_type, content in answer.get("content", {}).items():
                where = f"{label} {status} {media_type}"
                assert "schema" in content, where
                if content["schema"].get("format") != "binary":
                    assert "example" in content or "examples" in content, where


def test_api_operations_document_keys_and_open_ones_do_not(spec):
    assert spec["security"] == [{"ApiKeyHeader": []}, {"BearerAuth": []}]
    for method, path, operation in operations(spec):
        tag = operation["tags"][0]
        if tag in ("ui", "system"):
            assert operation.get("security") == [], f"{method} {path} is open"
        else:
            assert "security" not in operation and "401" in operation["responses"], path


def test_every_json_example_fits_its_schema(spec):
    checked = 0
    for method, path, operation in operations(spec):
        for status, answer in operation["responses"].items():
            content = resolve(answer, spec).get("content", {})
            media = content.get("application/json")
            if not media or media["schema"].get("format") == "binary":
                continue
            examples = [e["value"] for e in media.get("examples", {}).values()]
            if "example" in media:
                examples.append(media["example"])
            for value in examples:
                errors = schema_errors(value, media["schema"])
                assert not errors, f"{method.upper()} {path} {status} example: {errors}"
                checked += 1
    assert checked > 40


def test_components_are_the_marshmallow_schemas(spec):
    components = spec["components"]["schemas"]
    for name, schema in apidocs.schemas_of(schemas.Answer).items():
        if name == "Generated":
            continue
        declared = {field.data_key or key for key, field in schema().fields.items()}
        assert set(components[name]["properties"]) == declared, name
        assert components[name]["additionalProperties"] is (schema().unknown == "include")


def test_a_field_added_to_a_schema_appears_in_the_spec(monkeypatch):
    from marshmallow import fields

    field = fields.String(
        allow_none=True, validate=schemas.validate.Length(max=64), metadata={"description": "Lot"}
    )
    monkeypatch.setitem(schemas.ImageResultSchema._declared_fields, "chamber_id", field)
    component_schemas, *_ = apidocs.build_components.__wrapped__()
    result = component_schemas["ImageResult"]
    assert result["properties"]["chamber_id"] == {
        "type": "string",
        "nullable": True,
        "maxLength": 64,
        "description": "Lot",
    }
    assert "chamber_id" in result["required"]


def test_query_parameters_are_the_input_schemas(spec):
    for path, method, schema in (
        ("/images", "get", schemas.ImageListSchema),
        ("/query/defects", "get", schemas.DefectQuerySchema),
        ("/stats", "get", schemas.StatsQuerySchema),
        ("/batches", "get", schemas.PageSchema),
        ("/upload", "post", schemas.UploadOptionsSchema),
    ):
        params = resolve(spec["paths"][path][method].get("parameters", []), spec)
        query = [p["name"] for p in params if p["in"] == "query"]
        assert query == [f.data_key or name for name, f in schema().fields.items()], path
    page = spec["components"]["parameters"]["Page"]
    assert page["schema"] == {"type": "integer", "default": 1, "minimum": 1, "maximum": 1_000_000}


def test_every_example_is_used_and_every_error_is_documented(spec):
    text = json.dumps(spec["paths"])
    for name in spec["components"]["examples"]:
        assert f'"#/components/examples/{name}"' in text, f"example {name} is never used"
    for name in ERROR_RESPONSES:
        assert f'"#/components/responses/{name}"' in text, f"response {name} is never used"
    documented = {c for a in ERROR_RESPONSES.values() for c in a.cases if isinstance(c, str)}
    documented.add("INVALID_PARAMETER")  # its examples are BadInputs, run through validation
    generic = {"NOT_FOUND", "METHOD_NOT_ALLOWED", "INTERNAL_ERROR"}  # not tied to an operation
    assert set(CATALOGUE) - documented == generic


def test_error_examples_are_the_catalogue_messages(spec):
    for answer in spec["components"]["responses"].values():
        for example in answer["content"].get("application/json", {}).get("examples", {}).values():
            assert_from_catalogue(example["value"])


def test_examples_come_from_the_real_sample_answer(spec, sample_analysis_bytes, sample_answer):
    examples = spec["components"]["examples"]
    assert examples["AnalysisResults"]["value"] == json.loads(sample_analysis_bytes)
    assert (
        examples["UploadResult"]["value"]["analysis_results"] == sample_answer["analysis_results"]
    )
    assert (
        examples["UploadResult"]["value"]["processing_time_seconds"]
        == (sample_answer["processing_time"])
    )
    upload = examples["UploadResult"]["value"]
    assert upload["total_defects"] == 7
    assert upload["defect_classes"] == {"PI_Particle": 5, "PR_Peeling": 1, "Copper_Nodule": 1}
    region = examples["Regions"]["value"]["classes"][0]["regions"][0]
    assert region["centroid"] == {"x": 1655.904761904762, "y": 1508.0}


def test_file_uploads_are_documented_for_try_it_out(spec):
    single = spec["paths"]["/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert single["schema"]["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "description": "The AOI image (JPEG, PNG, TIFF or BMP, at most 50 MB)",
    }
    batch = spec["paths"]["/upload/batch"]["post"]
    images = batch["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert images["images"]["type"] == "array"
    assert images["images"]["items"] == {"type": "string", "format": "binary"}
    assert [p["name"] for p in resolve(batch["parameters"], spec)] == ["async"]


# ---- the docs pages -------------------------------------------------------------------------


def test_docs_pages_load_nothing_from_another_host(client):
    response = client.get("/apidocs/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "fonts.googleapis.com" not in page
    loaded = re.findall(r'<(?:link|script|img)\b[^>]*\b(?:href|src)="([^"]+)"', page)
    assert loaded, "the page loads Swagger UI"
    assert all(url.startswith("/flasgger_static/") for url in loaded), loaded
    assert '"/apispec.json"' in page
    assert "let auth_config = {};" in page  # Flasgger would render Python's None into the script
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    for asset in loaded:
        assert client.get(asset).status_code == 200, asset


def test_docs_redirects_to_apidocs(api):
    response, _ = api("get", "/docs", 302)
    assert response.headers["Location"].endswith("/apidocs/")


# ---- (b) real answers: a tour of every operation's success ------------------------------


def test_every_operation_answers_as_documented(app, api, spec, model_service, sample_input):
    """Each documented operation is called at least once with success, and each
    answer validates against the documented schema of its status code."""
    sample = (sample_input, "segformer_input.jpeg")
    _, uploaded = api("post", "/upload", 201, **form(image=sample))
    img_id = uploaded["img_unique_id"]
    image = {"img_id": img_id}
    _, with_images = api(
        "post", "/upload", 201, query_string={"include_images": "true"}, **form(image=sample)
    )
    assert {"overlay_image", "combined_image", "mask_image"} <= set(with_images)

    _, batch = api("post", "/upload/batch", 200, **form(images=[sample, (b"text", "notes.txt")]))
    assert [r["success"] for r in batch["results"]] == [True, False]
    batch_ref = {"batch_id": batch["batch_id"]}
    _, queued = api(
        "post", "/upload/batch", 202, query_string={"async": "true"}, **form(images=[sample])
    )
    app.extensions["aoi"].batches.wait_idle(timeout=30)

    api("get", "/health", 200)
    api("get", "/images", 200)
    api(
        "get",
        "/images",
        200,
        query_string={
            "class_name": "PR_Peeling",
            "sort": "most_defects",
            "start_date": "2020-01-01",
            "limit": 2,
        },
    )
    api("get", "/images/{img_id}", 200, params=image)
    api("get", "/images/{img_id}/classes", 200, params=image)
    api("get", "/images/{img_id}/regions", 200, params=image)
    api(
        "get",
        "/images/{img_id}/regions",
        200,
        params=image,
        query_string={"class_name": "Env_Particle"},
    )
    _, page = api(
        "get",
        "/query/defects",
        200,
        query_string={"class_name": "PI_Particle", "sort": "area_desc", "limit": 3},
    )
    assert page["regions"][0]["area_pixels"] == 114
    response, _ = api("get", "/query/defects", 200, query_string={"format": "csv"})
    assert response.data.startswith(b"region_unique_id,")
    api("get", "/stats", 200)
    api("get", "/stats", 200, query_string={"start_date": "2020-01-01", "end_date": "2999-12-31"})

    region = {**image, "region_unique_id": f"{img_id}_1_1"}
    review = {"disposition": "true_defect", "reviewer_class_name": "Env_Particle"}
    api("patch", "/images/{img_id}/regions/{region_unique_id}", 200, params=region, json=review)
    several = {"regions": [{"region_unique_id": f"{img_id}_1_2", "disposition": "false_call"}]}
    api("post", "/images/{img_id}/review", 200, params=image, json={**several, "reviewed": True})
    _, log = api("get", "/images/{img_id}/review-log", 200, params=image)
    assert log["total"] == 3
    _, traced = api("get", "/stats", 200, query_string={"group_by": "tool_id"})
    assert traced["review"]["totals"]["false_call"] == 1
    api("get", "/query/defects", 200, query_string={"disposition": "false_call"})

    api("get", "/batches", 200)
    api("get", "/batches/{batch_id}", 200, params=batch_ref)
    api("get", "/batches/{batch_id}", 200, params={"batch_id": queued["batch_id"]})
    api("post", "/batches/{batch_id}/retry", 200, params=batch_ref)

    for kind in ("input", "combined", "mask", "overlay", "thumbnail"):
        api("get", "/download/image/{img_id}/{kind}", 200, params={**image, "kind": kind})
    response, _ = api("get", "/download/json/{img_id}", 200, params=image)
    assert response.get_json()["classes"]["2_PR_Peeling"]["total_regions"] == 1
    response, _ = api("get", "/download/batch/{batch_id}", 200, params=batch_ref)
    assert "batch_summary.json" in zipfile.ZipFile(io.BytesIO(response.data)).namelist()

    api("get", "/docs", 302)
    for path in ("/", "/history", "/batches-list", "/statistics"):
        api("get", path, 200)
    api("get", "/results/{img_id}", 200, params=image)
    api("get", "/batch/{batch_id}", 200, params=batch_ref)

    api("delete", "/images/{img_id}", 200, params=image)

    succeeded = {(m, p) for m, p, status in api.seen if status < 400}
    missing = {(m, p) for m, p, _ in operations(spec)} - succeeded
    assert not missing, f"operations never called successfully: {sorted(missing)}"


# ---- (b) real answers: failures ------------------------------------------------------------


def test_not_found_answers(api):
    missing = {"img_id": "20260224_173819_AB12CD"}
    for path in (
        "/images/{img_id}",
        "/images/{img_id}/classes",
        "/images/{img_id}/regions",
        "/download/json/{img_id}",
    ):
        api("get", path, 404, params=missing)
    api("delete", "/images/{img_id}", 404, params=missing)
    api("get", "/download/image/{img_id}/{kind}", 404, params={**missing, "kind": "mask"})
    batch = {"batch_id": "20260224_180002_Q7M3XK"}
    for path in ("/batches/{batch_id}", "/download/batch/{batch_id}"):
        api("get", path, 404, params=batch)
    api("post", "/batches/{batch_id}/retry", 404, params=batch)


def test_bad_parameters_answer_400(api):
    for path, query in (
        ("/images", {"page": "0"}),
        ("/images", {"limit": "501"}),
        ("/images", {"class_name": "Scratch"}),
        ("/images", {"start_date": "yesterday"}),
        ("/images", {"sort": "random"}),
        ("/query/defects", {"min_area": "-1"}),
        ("/query/defects", {"min_circularity": "0.9", "max_circularity": "0.1"}),
        ("/query/defects", {"format": "xml"}),
        ("/stats", {"start_date": "2026-02-25", "end_date": "2026-02-24"}),
        ("/batches", {"limit": "0"}),
        # once 500s: offsets past the database's integers, dates past datetime's range
        ("/batches", {"page": str(10**20)}),
        ("/images", {"page": "9223372036854775807"}),
        ("/images", {"start_date": "0001-01-01T00:00:00+01:00"}),
        ("/images", {"end_date": "9999-12-31"}),
        ("/stats", {"start_date": "9999-12-31", "end_date": "9999-12-31"}),
        ("/query/defects", {"end_date": "9999-12-31T23:59:59-01:00"}),
    ):
        _, body = api("get", path, 400, query_string=query)
        assert body["code"] == "INVALID_PARAMETER" and set(body["details"]["fields"]) <= set(query)
    api(
        "get",
        "/images/{img_id}/regions",
        400,
        params={"img_id": "x"},
        query_string={"class_name": "nope"},
    )
    _, body = api(
        "get", "/download/image/{img_id}/{kind}", 400, params={"img_id": "x", "kind": "raw"}
    )
    assert "type" in body["details"]["fields"]


def test_unknown_query_parameters_answer_400_listing_the_documented_ones(api, spec):
    """Every GET with query parameters refuses one it does not know, and what it
    accepts is exactly what the docs (and so Swagger UI's try-it-out) send."""
    checked = []
    for method, path, operation in operations(spec):
        documented = sorted(
            parameter["name"]
            for parameter in resolve(operation.get("parameters", []), spec)
            if parameter["in"] == "query"
        )
        if method != "get" or not documented:
            continue
        values = {name: "mask" if name == "kind" else "x" for name in re.findall(r"{(\w+)}", path)}
        _, body = api("get", path, 400, params=values, query_string={"bogus_param": "1"})
        assert body["code"] == "INVALID_PARAMETER"
        assert "'bogus_param'" in body["error"]
        assert body["details"] == {"unknown": ["bogus_param"], "allowed": documented}, path
        checked.append(path)
    assert set(checked) >= {"/images", "/query/defects", "/stats", "/batches"}


def test_upload_refusals(make_app, spec, model_service, sample_input):
    api = Api(make_app(MAX_UPLOAD_MB=1, MAX_BATCH_FILES=2).test_client(), spec)
    cases = (
        ("/upload", {"data": {}, "content_type": "multipart/form-data"}, 400, "NO_FILE"),
        ("/upload", form(image=(b"", "empty.png")), 400, "EMPTY_FILE"),
        ("/upload", form(image=(b"hello", "notes.txt")), 400, "UNSUPPORTED_FORMAT"),
        ("/upload", form(image=(image_bytes()[:40], "cut.png")), 400, "UNDECODABLE_IMAGE"),
        ("/upload", form(image=(sample_input, "")), 400, "EMPTY_FILENAME"),
        ("/upload/batch", {"data": {}, "content_type": "multipart/form-data"}, 400, "NO_FILES"),
        ("/upload/batch", form(images=[(sample_input, "a.jpeg")] * 3), 400, "TOO_MANY_FILES"),
        ("/upload", form(image=(b"\xff" * (1024 * 1024 + 10), "big.jpg")), 413, "FILE_TOO_LARGE"),
        (
            "/upload",
            form(image=(b"\xff" * (3 * 1024 * 1024), "huge.jpg")),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    )
    for path, kwargs, status, code in cases:
        _, body = api("post", path, status, **kwargs)
        assert body["code"] == code, (path, code, body)
    _, body = api(
        "post",
        "/upload",
        400,
        query_string={"include_images": "maybe"},
        **form(image=(sample_input, "a.jpeg")),
    )
    assert body["code"] == "INVALID_PARAMETER"
    _, body = api(
        "post",
        "/upload/batch",
        400,
        query_string={"async": "later"},
        **form(images=[(sample_input, "a.jpeg")]),
    )
    assert body["code"] == "INVALID_PARAMETER"


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (
            {"status_code": 503, "json": {"success": False, "error": "模型尚未載入"}},
            503,
            "MODEL_NOT_LOADED",
        ),
        ({"exc": requests.exceptions.ConnectionError}, 503, "MODEL_UNAVAILABLE"),
        ({"exc": requests.exceptions.ReadTimeout}, 504, "MODEL_TIMEOUT"),
        ({"status_code": 500, "json": {"success": False, "error": "boom"}}, 502, "MODEL_ERROR"),
        ({"status_code": 200, "text": "<html>"}, 502, "MODEL_BAD_RESPONSE"),
        ({"status_code": 200, "json": {"success": True}}, 502, "MODEL_BAD_RESPONSE"),
    ],
)
def test_model_service_failures(api, model_service, sample_input, answer, status, code):
    model_service.post(f"{MODEL_URL}/upload", **answer)
    response, body = api("post", "/upload", status, **form(image=(sample_input, "a.jpeg")))
    assert body["code"] == code
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0


def test_failed_batch_files_and_their_retry(app, api, model_service, sample_input, sample_answer):
    model_service.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ConnectionError)
    _, batch = api("post", "/upload/batch", 200, **form(images=[(sample_input, "a.jpeg")]))
    assert batch["status"] == "failed" and batch["results"][0]["code"] == "MODEL_UNAVAILABLE"
    ref = {"batch_id": batch["batch_id"]}
    _, detail = api("get", "/batches/{batch_id}", 200, params=ref)
    assert detail["files"][0]["retryable"] is True
    _, listed = api("get", "/batches", 200)
    assert listed["batches"][0]["status"] == "failed"

    model_service.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    _, retried = api("post", "/batches/{batch_id}/retry", 202, params=ref)
    assert retried["retried"] == 1
    app.extensions["aoi"].batches.wait_idle(timeout=30)
    _, detail = api("get", "/batches/{batch_id}", 200, params=ref)
    assert detail["status"] == "done"


def test_download_variants(api, storage_root, model_service, sample_input):
    _, uploaded = api("post", "/upload", 201, **form(image=(sample_input, "a.jpeg")))
    image = {"img_id": uploaded["img_unique_id"], "kind": "overlay"}
    response, _ = api("get", "/download/image/{img_id}/{kind}", 200, params=image)
    etag = response.headers["ETag"]
    api(
        "get", "/download/image/{img_id}/{kind}", 304, params=image, headers={"If-None-Match": etag}
    )
    response, _ = api(
        "get", "/download/image/{img_id}/{kind}", 206, params=image, headers={"Range": "bytes=0-7"}
    )
    assert response.data == b"\x89PNG\r\n\x1a\n"
    api("get", "/download/json/{img_id}", 206, params=image, headers={"Range": "bytes=0-0"})
    response, _ = api("get", "/download/json/{img_id}", 200, params=image)
    api(
        "get",
        "/download/json/{img_id}",
        304,
        params=image,
        headers={"If-None-Match": response.headers["ETag"]},
    )
    for path in storage_root.rglob("overlay.png"):
        path.unlink()
    _, body = api("get", "/download/image/{img_id}/{kind}", 404, params=image)
    assert body["code"] == "FILE_MISSING"


def test_empty_database_statistics(api):
    _, body = api("get", "/stats", 200)
    assert body["processing_time"] == {"mean": None, "min": None, "max": None}
    assert body["date_range"] == {"first": None, "last": None}


def test_health_degraded_and_down(api, monkeypatch, model_service):
    model_service.get(f"{MODEL_URL}/health", exc=requests.exceptions.ConnectionError)
    _, body = api("get", "/health", 200)
    assert body["status"] == "degraded" and body["model_service"]["reachable"] is False

    from aoi_flask import system

    monkeypatch.setattr(
        system,
        "database_health",
        lambda: {"reachable": False, "backend": "mysql", "error": "(2003, 'no route')"},
    )
    _, body = api("get", "/health", 503)
    assert body["status"] == "down"


def test_keys_and_signed_links(make_app, spec, model_service, sample_input):
    api = Api(make_app(API_KEYS=[KEY]).test_client(), spec)
    _, body = api("get", "/images", 401)
    assert body["code"] == "AUTH_REQUIRED"
    _, body = api("get", "/stats", 401, headers={"X-API-Key": "wrong-key-0123456789"})
    assert body["code"] == "AUTH_INVALID"
    keyed = {"headers": {"X-API-Key": KEY}}
    _, uploaded = api("post", "/upload", 201, **keyed, **form(image=(sample_input, "a.jpeg")))
    image = {"img_id": uploaded["img_unique_id"]}
    signed = uploaded["json_url"].split("?", 1)[1]
    api("get", "/download/json/{img_id}", 200, params=image, query_string=signed)
    _, body = api(
        "get",
        "/download/json/{img_id}",
        403,
        params=image,
        query_string={"expires": "9999999999", "signature": "0" * 64},
    )
    assert body["code"] == "SIGNATURE_INVALID"
    api("get", "/health", 200)
    api("get", "/docs", 302)
    api("get", "/", 200)


def test_errors_outside_operations_have_the_error_shape(client, spec):
    error = resolve({"$ref": "#/components/schemas/Error"}, spec)
    for response in (client.get("/no/such/route"), client.put("/upload"), client.get("/upload")):
        assert response.status_code in (404, 405)
        assert not schema_errors(response.get_json(), error), response.get_json()


def test_purged_images_answer_410(app, api, model_service, sample_input):
    from aoi_flask.extensions import db
    from aoi_flask.models import Image
    from aoi_flask.services.storage import utc_now

    _, uploaded = api("post", "/upload", 201, **form(image=(sample_input, "a.jpeg")))
    image = {"img_id": uploaded["img_unique_id"], "kind": "mask"}
    with app.app_context():
        db.session.get(Image, image["img_id"]).purged_at = utc_now()
        db.session.commit()
    _, body = api("get", "/download/image/{img_id}/{kind}", 410, params=image)
    assert body["code"] == "IMAGES_PURGED"
    api("get", "/download/json/{img_id}", 410, params=image)
    _, detail = api("get", "/images/{img_id}", 200, params=image)
    assert detail["purged_at"]


def test_database_down_answers_503(api, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from aoi_flask.services import queries

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("(2013, 'Lost connection')"))

    monkeypatch.setattr(queries, "list_images", down)
    response, body = api("get", "/images", 503)
    assert body["code"] == "DATABASE_UNAVAILABLE" and int(response.headers["Retry-After"]) > 0


def test_open_circuit_breaker_answers_503(make_app, spec, model_service, sample_input):
    api = Api(make_app(MODEL_BREAKER_THRESHOLD=2, MODEL_BREAKER_COOLDOWN=60).test_client(), spec)
    model_service.post(f"{MODEL_URL}/upload", exc=requests.exceptions.ConnectionError)
    model_service.get(f"{MODEL_URL}/health", exc=requests.exceptions.ConnectionError)
    for _ in range(2):
        api("post", "/upload", 503, **form(image=(sample_input, "a.jpeg")))
    response, body = api("post", "/upload", 503, **form(image=(sample_input, "a.jpeg")))
    assert body["details"]["breaker"] == "open" and int(response.headers["Retry-After"]) >= 1
    _, health = api("get", "/health", 200)
    assert health["model_service"]["breaker"]["state"] == "open"
