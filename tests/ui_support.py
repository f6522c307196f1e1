"""Helpers shared by the UI tests: a live server, test images, asset scanning."""

import io
import re
import threading
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import numpy as np
from PIL import Image, ImageDraw
from werkzeug.serving import WSGIRequestHandler, make_server

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# XML namespace names (needed to create SVG elements) are identifiers, never fetched.
NAMESPACE_NAMES = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/1999/xhtml",
}
URL_IN_TEXT = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'`<>()\\]*""", re.IGNORECASE)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+?)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")
JS_IMPORT = re.compile(
    r"""(?:^|[;\s])(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]"""
    r"""|(?:^|[;\s])import\s*['"]([^'"]+)['"]"""
    r"""|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)""",
    re.MULTILINE,
)
# Attributes that make the browser fetch something (anchors are links, not assets).
ASSET_ATTRS = {
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("source", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("iframe", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("use", "href"),
    ("use", "xlink:href"),
    ("image", "href"),
    ("input", "src"),
}


# ---- a live server -------------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        return None


class LiveServer:
    """Serve a WSGI app on a free loopback port in a daemon thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def shutdown(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---- test images -----------------------------------------------------------------------


def defect_board(shift=0, *, dots=True, nodule=True, streak=True, dust=True, size=256):
    """A grey board with one defect of each kind the simulator tells apart.

    Dark sharp dots -> PI_Particle, a bright blob -> Copper_Nodule, a wide
    streak -> PR_Peeling, a faint dark spot -> Env_Particle. ``shift`` moves
    everything so each board is a different image.
    """
    rng = np.random.default_rng(100 + shift)
    pixels = np.clip(rng.normal(128, 3, (size, size)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)

    def disc(cx, cy, radius, grey):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=grey)

    if dots:
        for cx, cy in ((48 + shift, 40), (190, 70 + shift), (70, 190 - shift)):
            disc(cx, cy, 3, 25)
    if nodule:
        disc(160 - shift, 160, 6, 232)
    if streak:
        draw.line((30, 110 + shift, 110, 225), fill=45, width=11)
    if dust:
        disc(215, 215 - shift, 3, 74)
    return png(image)


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# ---- scanning pages and assets ---------------------------------------------------------


class RefParser(HTMLParser):
    """Collects every URL-bearing attribute of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.assets = []
        self.links = []
        self.inline_styles = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if (tag, name) in ASSET_ATTRS:
                self.assets.append(value)
            elif name in {"href", "action", "formaction", "poster", "srcset", "src", "data"}:
                self.links.append(value)
            if name == "style":
                self.inline_styles.append(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.inline_styles.append(data)


def parse_refs(html):
    parser = RefParser()
    parser.feed(html)
    return parser


def is_local(url):
    """Relative URLs, fragments, data: and loopback URLs stay on this machine."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob"):
        return True
    if parts.scheme and parts.scheme not in ("http", "https"):
        return False
    if not parts.netloc:
        return True
    return parts.hostname in LOCAL_HOSTS


def external_urls(text):
    """Absolute or protocol-relative URLs in any text that point off this machine."""
    found = []
    for match in URL_IN_TEXT.finditer(text):
        url = match.group(0).rstrip(".,;")
        if url in NAMESPACE_NAMES or url.rstrip("/") in NAMESPACE_NAMES:
            continue
        if not is_local(url if not url.startswith("//") else f"http:{url}"):
            found.append(url)
    return found


def css_refs(text):
    return [a or b for a, b in CSS_URL.findall(text)]


def js_refs(text):
    return [next(group for group in match if group) for match in JS_IMPORT.findall(text)]


def fetch_assets(client, page_path):
    """Fetch a page and, recursively, every asset it and its CSS/JS reference.

    Returns ({url: response}, [(referrer, ref)] of refs that point off this machine).
    """
    seen = {}
    external = []
    queue = [(page_path, None)]
    while queue:
        path, referrer = queue.pop()
        if path in seen:
            continue
        response = client.get(path)
        seen[path] = response
        if response.status_code != 200:
            continue
        text = response.get_data(as_text=True) if _is_text(response) else ""
        refs = []
        if response.mimetype == "text/html":
            parsed = parse_refs(text)
            refs = parsed.assets
            external += [(path, ref) for ref in parsed.links if not is_local(ref)]
            for style in parsed.inline_styles:
                refs += css_refs(style)
        elif response.mimetype == "text/css":
            refs = css_refs(text)
        elif "javascript" in response.mimetype:
            refs = js_refs(text)
        external += [(path, url) for url in external_urls(text)]
        for ref in refs:
            if not is_local(ref):
                external.append((path, ref))
                continue
            if ref.startswith(("#", "data:", "blob:")):
                continue
            target = urlsplit(urljoin(f"http://localhost{path}", ref))
            queue.append((target.path + (f"?{target.query}" if target.query else ""), path))
    return seen, external


def _is_text(response):
    return response.mimetype.startswith("text/") or response.mimetype in (
        "application/javascript",
        "application/json",
        "image/svg+xml",
    )
