"""A model-service stub that answers every upload at once with a real-size answer.

The answer is the recorded sample (tests/data): the 1792x1792 mask and overlay
PNGs as the service sent them, and the combined image (input | overlay, width
doubled) encoded the way the service's OpenCV encoder does (Sub filter, zlib
level 1, RLE strategy, 8 KiB IDAT chunks), so its size matches the service's:
about 9.7 MB of PNG, 12.9 MB of JSON. The body is built once; each answer only
echoes the name sent. Loopback only.

    python scripts/model_stub.py --port 18081
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import struct
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
INPUT = DATA / "segformer_input.jpeg"
ANALYSIS = ROOT / "aoi_flask" / "data" / "sample_analysis.json"
SENT_NAME = re.compile(rb'name="image"; filename="([^"]*)"')
MODEL_INFO = {
    "success": True,
    "current_model": "segformer",
    "model_name": "stub/real-size-sample",
    "base_size": 1792,
    "patch_size": 512,
}


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def opencv_like_png(rgb):
    """PNG bytes of an RGB array, filtered and compressed like cv2.imwrite's defaults."""
    height, width, _ = rgb.shape
    pixels = rgb.astype(np.int16)
    left = np.concatenate([np.zeros((height, 1, 3), np.int16), pixels[:, :-1]], axis=1)
    rows = ((pixels - left) % 256).astype(np.uint8).reshape(height, -1)
    raw = np.concatenate([np.ones((height, 1), np.uint8), rows], axis=1).tobytes()
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    stream = packer.compress(raw) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = b"".join(png_chunk(b"IDAT", stream[i : i + 8192]) for i in range(0, len(stream), 8192))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + idat + png_chunk(b"IEND", b"")


def sample_pngs():
    """combined / mask / overlay PNG bytes of the recorded sample."""
    overlay = (DATA / "sample_overlay.png").read_bytes()
    grey = np.asarray(Image.open(INPUT).convert("RGB"))
    overlay_rgb = np.asarray(Image.open(io.BytesIO(overlay)).convert("RGB"))
    return {
        "combined": opencv_like_png(np.hstack([grey, overlay_rgb])),
        "mask": (DATA / "sample_mask.png").read_bytes(),
        "overlay": overlay,
    }


def answer_parts(pngs=None, processing_time=0.0):
    """The answer's JSON as (before the name, after the name): the name is echoed."""
    pngs = pngs or sample_pngs()
    body = {
        "success": True,
        "filename": "\x00NAME\x00",
        "overlay_image": base64.b64encode(pngs["overlay"]).decode("ascii"),
        "combined_image": base64.b64encode(pngs["combined"]).decode("ascii"),
        "mask_image": base64.b64encode(pngs["mask"]).decode("ascii"),
        "total_defects": 7,
        "processing_time": processing_time,
        "analysis_results": json.loads(ANALYSIS.read_bytes()),
        "timestamp": "20260224_173819",
    }
    text = json.dumps(body).encode("ascii")
    before, after = text.split(b'"\\u0000NAME\\u0000"')
    return before, after


def sample_input():
    return INPUT.read_bytes()


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    parts = (b"", b"")

    def log_message(self, *args):  # quiet: thousands of requests
        pass

    def reply(self, status, *chunks):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, json.dumps({"status": "ok", "model_loaded": True}).encode())
        elif self.path == "/api/model/current":
            self.reply(200, json.dumps(MODEL_INFO).encode())
        else:
            self.reply(404, b'{"success": false, "error": "not found"}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/upload":
            self.reply(404, b'{"success": false, "error": "not found"}')
            return
        match = SENT_NAME.search(body)
        name = match.group(1).decode("utf-8", "replace") if match else ""
        before, after = self.parts
        self.reply(200, before, json.dumps(name).encode("ascii"), after)


def serve(port, host="127.0.0.1"):
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the stub serves on loopback only")
    started = time.monotonic()
    StubHandler.parts = answer_parts()
    size = sum(len(part) for part in StubHandler.parts)
    server = ThreadingHTTPServer((host, port), StubHandler)
    server.daemon_threads = True
    print(
        f"stub ready on {host}:{port}: answer {size / 1e6:.1f} MB "
        f"(built in {time.monotonic() - started:.1f} s)",
        flush=True,
    )
    server.serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
