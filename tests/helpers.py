"""Small helpers shared by the test modules."""

import io
from pathlib import Path

from PIL import Image


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def image_bytes(fmt="PNG", size=(64, 48), mode="L", color=128):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def stored_files(root):
    """Every file under the storage root, relative (hidden temp files included)."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def upload(client, data, name="segformer_input.jpeg", **query):
    return client.post(
        "/upload",
        data={"image": (io.BytesIO(data), name)},
        query_string=query,
        content_type="multipart/form-data",
    )


def upload_batch(client, files, **query):
    """files: list of (bytes, name)."""
    return client.post(
        "/upload/batch",
        data={"images": [(io.BytesIO(data), name) for data, name in files]},
        query_string=query,
        content_type="multipart/form-data",
    )
