"""Reading /apispec.json in tests: resolve `$ref`s, find the documented answer of an
operation, and check a real response against it (status, media type, required
headers, body schema). OpenAPI 3.0 schemas (with `nullable`) are validated by
openapi-schema-validator's OAS 3.0 validator."""

import re

from openapi_schema_validator import OAS30Validator, oas30_format_checker

IGNORED_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def load_spec(client):
    response = client.get("/apispec.json")
    assert response.status_code == 200, response.data[:300]
    return response.get_json()


def resolve(node, spec, seen=()):
    """`node` with every local `$ref` replaced by a deep copy of its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = node["$ref"]
            assert target.startswith("#/"), f"only local references: {target}"
            assert target not in seen, f"recursive reference {target}"
            value = spec
            for part in target[2:].split("/"):
                value = value[part]
            return resolve(value, spec, (*seen, target))
        return {key: resolve(value, spec, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, spec, seen) for value in node]
    return node


def openapi_path(rule):
    """`/images/<img_id>` (Werkzeug) → `/images/{img_id}` (OpenAPI)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def operations(spec):
    """(method, path, operation) for every documented operation."""
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method, path, item[method]


def schema_errors(instance, schema):
    validator = OAS30Validator(schema, format_checker=oas30_format_checker)
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in validator.iter_errors(instance)
    )


def header_value(text, schema):
    if schema.get("type") == "integer":
        return int(text)
    return text


def check_response(spec, method, path, response):
    """Assert that `response` is what the spec documents for `method path`."""
    label = f"{method.upper()} {path} → {response.status_code}"
    operation = spec["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, (
        f"{label} is not documented (documented: {sorted(operation['responses'])}); "
        f"body: {response.data[:300]!r}"
    )
    documented = resolve(documented, spec)
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{label}: required header {name} missing"
        if name in response.headers and "schema" in header:
            value = header_value(response.headers[name], header["schema"])
            errors = schema_errors(value, header["schema"])
            assert not errors, f"{label}: header {name}: {errors}"
    content = documented.get("content")
    if not content:
        assert not response.data, f"{label}: documented without a body, got {response.data[:200]!r}"
        return None
    assert response.mimetype in content, (
        f"{label}: media type {response.mimetype} not documented ({sorted(content)})"
    )
    schema = content[response.mimetype]["schema"]
    if response.mimetype != "application/json" or schema.get("format") == "binary":
        return response.data
    body = response.get_json()
    errors = schema_errors(body, schema)
    assert not errors, f"{label}: the body breaks the documented schema:\n" + "\n".join(errors)
    return body
