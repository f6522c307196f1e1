"""The simulator's small self-description: /docs page and a Swagger 2.0 stub."""

from __future__ import annotations

ENDPOINTS = (
    ("get", "/health", "Service health (labelled as simulator)"),
    ("post", "/upload", "Analyse one image (multipart field 'image')"),
    (
        "post",
        "/upload/batch",
        "Analyse several images (multipart field 'images', repeated)",
    ),
    ("get", "/api/status", "System information"),
    ("get", "/api/model/current", "Current model; 503 when no model is loaded"),
    ("get", "/api/model/available", "Models that can be switched to"),
    (
        "post",
        "/api/model/switch",
        'Switch model, JSON {"model": "segformer"|"oneformer"}',
    ),
    ("get", "/download/{path}", "A file from the simulator's temporary results folder"),
    ("get", "/_simulator/config", "Simulator only: current latency/failure options"),
    (
        "post",
        "/_simulator/config",
        "Simulator only: change latency/failure options (JSON)",
    ),
    (
        "get",
        "/_simulator/calls",
        "Simulator only: model calls running now, the most at once, and in all "
        "(?timeline=true: when each finished call ran)",
    ),
    ("delete", "/_simulator/calls", "Simulator only: reset the call counters"),
)

_ROWS = "\n".join(
    f"<tr><td>{method.upper()}</td><td><code>{path}</code></td><td>{summary}</td></tr>"
    for method, path, summary in ENDPOINTS
)

DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>AOI model service SIMULATOR</title></head>
<body>
<h1>AOI model service &mdash; SIMULATOR</h1>
<p>This is a stand-in for the SegFormer defect model service. It uses classical
image processing (no weights, no GPU) and exists for demos, end-to-end tests
and benchmarks. Its answers follow the real service's contract.</p>
<table border="1" cellpadding="4">
<tr><th>Method</th><th>Path</th><th>What it does</th></tr>
{_ROWS}
</table>
<p>Spec: <a href="/apispec.json">/apispec.json</a> (Swagger 2.0, minimal).</p>
</body>
</html>
"""


def api_spec() -> dict:
    paths: dict = {}
    for method, path, summary in ENDPOINTS:
        paths.setdefault(path, {})[method] = {
            "summary": summary,
            "responses": {"200": {"description": "OK"}},
        }
    return {
        "swagger": "2.0",
        "info": {"title": "AOI model service simulator", "version": "1.0"},
        "paths": paths,
    }
