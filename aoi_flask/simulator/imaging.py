"""Turning uploaded bytes into the 8-bit images the simulator works on."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


class UnreadableImage(ValueError):
    """The bytes are not an image we can decode."""


@dataclass
class DecodedImage:
    gray: np.ndarray  # uint8 HxW, what the analysis runs on
    display_rgb: np.ndarray  # uint8 HxWx3, what the overlay is drawn on


def decode_image(data: bytes) -> DecodedImage:
    """Decode JPEG/PNG/TIFF/BMP (grey or colour, 8/16 bit or float)."""
    pixels = decode_with_opencv(data)
    if pixels is None:
        pixels = decode_with_pillow(data)
    if pixels is None or pixels.size == 0:
        raise UnreadableImage("image could not be decoded")
    return to_display_and_gray(to_uint8(pixels))


def decode_with_opencv(data: bytes) -> np.ndarray | None:
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        return None
    try:
        return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def decode_with_pillow(data: bytes) -> np.ndarray | None:
    # Pillow reads some TIFF flavours OpenCV refuses; it hands back RGB, so
    # flip to BGR to match the OpenCV path.
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode not in ("L", "I;16", "I", "F", "RGB"):
                image = image.convert("RGB")
            pixels = np.array(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None
    if pixels.ndim == 3:
        pixels = pixels[..., ::-1]
    return np.ascontiguousarray(pixels)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    # Deeper images use an unknown part of their range (12-bit sensors in a
    # 16-bit container, floats); stretching min..max keeps defects visible.
    pixels = np.nan_to_num(pixels.astype(np.float32))
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, np.uint8)
    scaled = (pixels - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_display_and_gray(pixels: np.ndarray) -> DecodedImage:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] == 2:
        pixels = pixels[..., 0]  # grey + alpha
    if pixels.ndim == 2:
        gray = np.ascontiguousarray(pixels)
        return DecodedImage(gray=gray, display_rgb=cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    bgr = np.ascontiguousarray(pixels[..., :3])
    return DecodedImage(
        gray=cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        display_rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
    )
