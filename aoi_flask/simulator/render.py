"""Drawing the mask, overlay and combined images, and encoding them."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from .analysis import CLASS_KEYS, Analysis

# RGB, in class order; matches the real service's mask.
CLASS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))
BACKGROUND_COLOUR = (0, 0, 0)

# Level 1 with the "up" filter was the fastest setting that still compresses
# the large combined image several-fold (measured on the 1792x1792 sample).
PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
]

# OpenCV releases the GIL while encoding, so the biggest image is encoded
# beside the others instead of after them.
_ENCODER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sim-png")
# OpenCV 5 loads its font once per thread (~35 ms), and the threaded server
# starts a new thread per request; one long-lived thread draws all text.
_TEXT_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-text")


def render_mask(analysis: Analysis) -> np.ndarray:
    class_map = analysis.label_classes()[analysis.labels]
    # cv2.LUT is several times faster than numpy's fancy indexing here.
    palette = np.zeros((256, 1, 3), np.uint8)
    palette[0, 0] = BACKGROUND_COLOUR
    palette[1 : len(CLASS_COLOURS) + 1, 0] = CLASS_COLOURS
    return cv2.LUT(cv2.merge((class_map, class_map, class_map)), palette)


def render_overlay(display_rgb: np.ndarray, analysis: Analysis) -> np.ndarray:
    overlay = display_rgb.copy()
    thickness = max(1, round(min(analysis.height, analysis.width) / 900))
    for class_index, colour in enumerate(CLASS_COLOURS):
        contours = [r.contour for r in analysis.regions if r.class_index == class_index]
        if contours:
            cv2.drawContours(overlay, contours, -1, colour, thickness, cv2.LINE_8)
    _TEXT_WORKER.submit(draw_legend, overlay, analysis).result()
    return overlay


def draw_legend(image: np.ndarray, analysis: Analysis) -> None:
    """One line per class that has regions, like the real service."""
    scale = max(0.3, image.shape[1] / 1200)
    thickness = max(1, round(scale))
    line_height = round(40 * scale)
    counts = analysis.class_counts()
    lines = [
        (f"{key}: {counts[key]} regions", colour)
        for key, colour in zip(CLASS_KEYS, CLASS_COLOURS, strict=True)
        if counts[key]
    ]
    for row, (text, colour) in enumerate(lines, 1):
        origin = (round(10 * scale), row * line_height)
        cv2.putText(
            image,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            colour,
            thickness,
            cv2.LINE_AA,
        )


def render_combined(display_rgb: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    return np.hstack((display_rgb, overlay))


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_answer_pngs(display_rgb: np.ndarray, analysis: Analysis) -> dict[str, bytes]:
    """The overlay, combined and mask images as PNG files."""
    overlay = render_overlay(display_rgb, analysis)
    combined = _ENCODER_POOL.submit(lambda: encode_png(render_combined(display_rgb, overlay)))
    overlay_png = encode_png(overlay)
    mask_png = encode_png(render_mask(analysis))
    return {"overlay": overlay_png, "combined": combined.result(), "mask": mask_png}


def answer_images(pngs: dict[str, bytes]) -> dict[str, str]:
    """The three base64 PNG fields of an upload answer."""
    return {f"{kind}_image": to_base64(pngs[kind]) for kind in ("overlay", "combined", "mask")}
