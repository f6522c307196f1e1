"""The API contract: Flasgger (OpenAPI 3.0.3) at /apidocs, the spec at /apispec.json.

Nothing here restates a schema; each part of the spec comes from where its facts live:
- `components.schemas`: every `Answer` and JSON request `Body` schema of schemas.py
  (apispec's MarshmallowPlugin);
- `components.parameters`: the input schemas (`schema2parameters`). A docstring says
  `x-query: ImageList` to take every field of `ImageListSchema` as a query parameter,
  and `$ref`s the path parameters (`ImgId`, `BatchId`, `RegionUniqueId`, `Kind`);
  `x-form: Traceability` adds every field of `TraceabilitySchema` to the multipart body;
- `components.responses`: errors.ERROR_RESPONSES, messages from errors.CATALOGUE;
- `components.examples`: the real sample answer dumped through the schemas (samples.py).
Views keep short Flasgger YAML docstrings. Swagger UI comes from /flasgger_static only
(templates/flasgger/head.html drops Google Fonts; a CSP refuses other hosts: air-gapped fabs).
"""

import copy
from functools import cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter, resolver
from apispec.ext.marshmallow.common import resolve_schema_instance
from flasgger import Swagger
from flasgger.constants import OPTIONAL_FIELDS
from flask import Blueprint, Flask, redirect, request, url_for
from marshmallow import INCLUDE, fields

from . import samples, schemas
from .errors import ERROR_RESPONSES

bp = Blueprint("apidocs", __name__)
BASE_URL = "http://127.0.0.1:5000"

# Docs pages run Swagger UI's inline start-up script and styles, nothing from elsewhere.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
CONSTANT_TYPES = {bool: "boolean", int: "integer", str: "string"}


class Converter(OpenAPIConverter):
    """apispec's converter plus the conventions of schemas.py: `Shaped` fields are
    documented by their shape, `Constant`s as a one-value enum, and every field of an
    `Answer` is required unless its metadata says `optional`; a `Body` is closed."""

    def field2property(self, field):
        if isinstance(field, schemas.Shaped):
            return self.field2property(field.shape)
        prop = super().field2property(field)
        if isinstance(field, fields.Constant):
            prop.update(type=CONSTANT_TYPES[type(field.constant)], enum=[field.constant])
        if prop.get("default", ...) is None or isinstance(field, fields.Constant):
            prop.pop("default")
        return prop

    def schema2jsonschema(self, schema):
        result = super().schema2jsonschema(schema)
        answer = resolve_schema_instance(schema)
        if isinstance(answer, schemas.Body):
            result["additionalProperties"] = False
        if isinstance(answer, schemas.Answer):
            result["additionalProperties"] = answer.unknown == INCLUDE
            result["required"] = [
                field.data_key or name
                for name, field in answer.fields.items()
                if not field.metadata.get("optional")
            ]
            if not result["required"]:
                del result["required"]  # OpenAPI 3.0 refuses an empty list
        return result


class Plugin(MarshmallowPlugin):
    Converter = Converter


def schemas_of(base):
    """The subclasses of `base` in schemas.py, by name without `Schema`."""
    return {
        resolver(value): value
        for value in vars(schemas).values()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    }


def camel(name):
    return "".join(part.capitalize() for part in name.split("_"))


def parameters(converter, schema, location, **names):
    """The schema's fields as OpenAPI parameters (`names` renames fields)."""
    found = {}
    for param in converter.schema2parameters(schema, location=location):
        param["name"] = names.get(param["name"], param["name"])
        param["required"] = location == "path" or param.get("required", False)
        schema = param["schema"]
        if "example" in schema:
            param["example"] = schema.pop("example")
        # An absent query parameter loads as None; a present one is never null.
        if schema.pop("nullable", False) and "enum" in schema:
            schema["enum"].remove(None)
        found[param["name"]] = param
    return found


@cache  # the schemas do not change while the process runs
def build_components():
    spec = APISpec("AOI", "1", "3.0.3", plugins=[plugin := Plugin()])
    bodies = schemas_of(schemas.Body)
    for name, schema in (schemas_of(schemas.Answer) | bodies).items():
        if name not in spec.components.schemas and name != "Generated":
            spec.components.schema(name, schema=schema)
    converter = plugin.converter
    params = {camel(n): p for n, p in parameters(converter, schemas.PathSchema, "path").items()}
    params["Kind"] = parameters(converter, schemas.DownloadTypeSchema, "path", type="kind")["kind"]
    params["ImgId"]["example"] = samples.SAMPLE_ID
    params["BatchId"]["example"] = samples.SAMPLE_BATCH
    params["RegionUniqueId"]["example"] = samples.SAMPLE_REGION
    query = {}  # x-query label → the keys of its parameters in components.parameters
    for label, schema in schemas_of(schemas.StrictSchema).items():  # x-query: <label>
        query[label] = []
        for name, param in parameters(converter, schema, "query").items():
            key = camel(name)
            if params.get(key, param) != param:  # same name, other meaning
                key = f"{label}{key}"
            params[key] = param
            query[label].append(key)
    forms = {}  # x-form label → the multipart properties of its schema
    for label in ("Traceability",):
        properties = converter.schema2jsonschema(getattr(schemas, f"{label}Schema"))["properties"]
        for prop in properties.values():
            prop.pop("nullable", None)  # a form field is absent, never null
        forms[label] = properties
    return spec.to_dict()["components"]["schemas"], params, query, forms


# ---- components.responses: the error answers, from errors.CATALOGUE --------------------
HTML_PAGE = {
    "description": "The HTML page; its script fills it from the JSON API",
    "headers": {"Content-Security-Policy": {"schema": {"type": "string"}, "description": "Only "
                "this server's own scripts, styles and images"}},
    "content": {"text/html": {"schema": {"type": "string"},
                              "example": '<!DOCTYPE html><html lang="en">…</html>'}},
}  # fmt: skip


def error_responses():
    built = {"HtmlPage": copy.deepcopy(HTML_PAGE)}
    for key, answer in ERROR_RESPONSES.items():
        content = {"schema": {"$ref": "#/components/schemas/Error"}}
        content["examples"] = dict(samples.error_example(case) for case in answer.cases)
        built[key] = {"description": answer.description, "content": {"application/json": content}}
        if answer.headers:
            built[key]["headers"] = copy.deepcopy(answer.headers)
    return built


# ---- the template and the Flasgger configuration -------------------------------------------

TAGS = [
    ("upload", "Send images to the model service and store the results"),
    ("images", "Images and queries: stored results, their classes and regions, region search "
     "and statistics"),
    ("batches", "Progress of batch uploads, retries, the batch list"),
    ("review", "Dispositions of detected regions by QC reviewers, and their log"),
    ("download", "Stored inputs, result images, analysis JSON and batch ZIPs, byte for byte"),
    ("system", "Health of the agent and everything it depends on; the docs"),
    ("ui", "Web pages for QC engineers (HTML; each page's script calls the JSON API)"),
]  # fmt: skip

DESCRIPTION = (samples.DATA / "api_description.md").read_text("utf-8")


@cache
def sample_examples():
    """The examples, with the URLs an agent at BASE_URL hands out (never signed: built on
    a bare app that has the routes and no keys)."""
    from . import register_blueprints

    bare = Flask(__name__)
    register_blueprints(bare)
    with bare.test_request_context(base_url=BASE_URL):
        return samples.examples()


def build_template(title, component_schemas, params):
    return {
        "info": {"title": title, "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "This agent"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS],
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
        "components": {
            "schemas": copy.deepcopy(component_schemas),
            "responses": error_responses(),
            "parameters": copy.deepcopy(params),
            "examples": copy.deepcopy(sample_examples()),
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerAuth": {"type": "http", "scheme": "bearer"},
            },
        },
    }


class ApiDocs(Swagger):
    """Flasgger, plus `x-query: <Schema>` in docstrings expanded into parameter `$ref`s
    and `x-form: <Schema>` into properties of the multipart/form-data body."""

    def __init__(self, *args, query, forms, **kwargs):
        self.query, self.forms = query, forms
        super().__init__(*args, **kwargs)

    def get_apispecs(self, endpoint="apispec_1"):
        data = super().get_apispecs(endpoint)
        for item in data["paths"].values():
            for operation in item.values():
                for label in operation.pop("x-query", "").split():
                    refs = [{"$ref": f"#/components/parameters/{k}"} for k in self.query[label]]
                    operation.setdefault("parameters", []).extend(refs)
                for label in operation.pop("x-form", "").split():
                    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
                    body["properties"].update(copy.deepcopy(self.forms[label]))
        return data


def documented(rule):
    """Rules that belong in the spec: everything but static files and Flasgger's own."""
    return rule.endpoint != "static" and not rule.endpoint.startswith("flasgger.")


def swagger_config(app):
    return {
        "openapi": "3.0.3",
        "uiversion": 3,
        "title": app.config.get("SWAGGER_TITLE", "AOI Inference Agent API"),
        "specs": [{"endpoint": "apispec", "route": "/apispec.json", "rule_filter": documented}],
        "specs_route": "/apidocs/",
        "static_url_path": "/flasgger_static",
        "headers": [],
        "doc_expansion": "list",
        # Rendered into the page's script as-is: without it the page runs `initOAuth(None)`.
        "auth": {},
        "ui_params": {
            "displayRequestDuration": True,
            "defaultModelsExpandDepth": 0,
            "showCommonExtensions": True,
        },
        "optional_fields": [*OPTIONAL_FIELDS, "x-query", "x-form"],
        **app.config.get("SWAGGER", {}),
    }


def keep_text(text):
    """Docstring summaries and descriptions go to the spec as Markdown, unchanged."""
    return text.strip() if text else text


@bp.get("/docs")
def docs():
    """Redirect to the Swagger UI.

    The interactive API documentation lives at /apidocs/ (Flasgger); the
    OpenAPI 3 spec it shows is at /apispec.json.
    ---
    tags: [system]
    operationId: docs
    security: []
    responses:
      302:
        description: Redirect to /apidocs/
        headers:
          Location:
            description: The Swagger UI
            required: true
            schema: {type: string}
        content:
          text/html:
            schema: {type: string}
            example: <a href="/apidocs/">/apidocs/</a>
    """
    return redirect(url_for("flasgger.apidocs"))


def docs_headers(response):
    if request.blueprint == "flasgger" and response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def register_apidocs(app):
    """Swagger UI at /apidocs/, the OpenAPI 3 spec at /apispec.json, /docs → /apidocs/."""
    component_schemas, params, query, forms = build_components()
    config = swagger_config(app)
    app.config["SWAGGER"] = config
    app.register_blueprint(bp)
    template = build_template(config["title"], component_schemas, params)
    ApiDocs(app, config=config, template=template, sanitizer=keep_text, query=query, forms=forms)
    app.after_request(docs_headers)
