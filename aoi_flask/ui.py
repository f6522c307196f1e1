"""UI group: the web pages QC engineers use.

Every page is a server-rendered shell (base layout, navigation, empty panels);
the page's JavaScript module fetches the JSON API and fills it in. Pages hold
no data themselves, so they stay open when API keys are configured: the
scripts send the key (`X-API-Key`) with every API call. All assets come from
/static; the Content-Security-Policy below makes the browser refuse anything
else (CDNs, inline scripts), which keeps the pages usable on an air-gapped
network and blunts any escaping mistake.
"""

from flask import Blueprint, render_template

bp = Blueprint("ui", __name__)

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)


@bp.after_request
def page_headers(response):
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.get("/")
def analyse():
    """Analyse page: system status, single or batch upload, results inline.
    ---
    tags: [ui]
    operationId: page_analyse
    security: []
    responses:
      200: {$ref: '#/components/responses/HtmlPage'}
    """
    return render_template("index.html", active="analyse")


@bp.get("/results/<img_id>")
def result(img_id):
    """One stored result. Unknown ids still render: the script shows "not found".
    ---
    tags: [ui]
    operationId: page_result
    security: []
    parameters:
      - $ref: '#/components/parameters/ImgId'
    responses:
      200: {$ref: '#/components/responses/HtmlPage'}
    """
    return render_template("result.html", active="history", img_id=img_id)


@bp.get("/history")
def history():
    """Thumbnail gallery of stored results with date, class and batch filters.
    ---
    tags: [ui]
    operationId: page_history
    security: []
    responses:
      200: {$ref: '#/components/responses/HtmlPage'}
    """
    return render_template("history.html", active="history")


@bp.get("/batches-list")
def batches():
    """All batches, newest first, with their progress.
    ---
    tags: [ui]
    operationId: page_batches
    security: []
    responses:
      200: {$ref: '#/components/responses/HtmlPage'}
    """
    return render_template("batches.html", active="batches")


@bp.get("/batch/<batch_id>")
def batch(batch_id):
    """One batch: progress, per-file rows, retry of failed files, ZIP download.

    (`/batches/<id>` is the JSON API, so the page lives at `/batch/<id>`.)
    ---
    tags: [ui]
    operationId: page_batch
    security: []
    parameters:
      - $ref: '#/components/parameters/BatchId'
    responses:
      200: {$ref: '#/components/responses/HtmlPage'}
    """
    return render_template("batch.html", active="batches", batch_id=batch_id)


@bp.get("/statistics")
def statistics():
    """Defect Pareto by class and the daily trend of images and defects.
    ---
    tags: [ui]
    operationId: page_statistics
    security: []
    responses:
      200: {$ref: '#/components/responses/HtmlPage'}
    """
    return render_template("statistics.html", active="statistics")
