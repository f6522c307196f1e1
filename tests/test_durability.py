"""Stored files are fsync'ed (file, then its folder) before acknowledgement; PNG structure check."""

import io
import os
import zlib

import pytest
from PIL import Image

from aoi_flask.services import storage as storage_module
from aoi_flask.services.imaging import png_data_size, png_size
from aoi_flask.services.storage import Storage


def png_bytes(width=40, height=30, **save):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "PNG", **save)
    return buffer.getvalue()


def test_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        storage_module.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))
    )
    monkeypatch.setattr(
        storage_module.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))
    )
    Storage(tmp_path).write_atomic("results/x/a.png", b"data")
    assert events == ["fsync", "rename", "fsync"]
    assert (tmp_path / "results/x/a.png").read_bytes() == b"data"


def test_fsync_off_skips_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(storage_module.os, "fsync", calls.append)
    Storage(tmp_path, fsync=False).write_atomic("results/x/a.png", b"data")
    assert calls == []


def test_png_size_reads_a_complete_png():
    assert png_size(png_bytes()) == (40, 30)
    assert png_size(png_bytes(17, 9, optimize=True)) == (17, 9)


def test_interlaced_size_counts_each_adam7_pass():
    # 1x1: only pass 1 has a pixel; 8x8 grey: 1,1,2,4,8,16,32 pixels in 1,1,1,2,2,4,4 rows.
    assert png_data_size(1, 1, 8, 0, 1) == 2
    assert png_data_size(8, 8, 8, 0, 1) == 2 + 2 + 3 + 2 * 3 + 2 * 5 + 4 * 5 + 4 * 9
    assert png_data_size(8, 8, 8, 0, 0) == 8 * 9


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:-12],  # no IEND
        lambda d: d[: len(d) // 2],  # truncated in IDAT
        lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:],  # CRC mismatch
        lambda d: b"GIF89a" + d[6:],
    ],
)
def test_png_size_refuses_damaged(damage):
    with pytest.raises(ValueError):
        png_size(damage(png_bytes()))


def test_png_size_refuses_data_shorter_than_ihdr_says():
    data = png_bytes(40, 30)
    # Same chunks, but IHDR claims one more row than the pixel data holds.
    ihdr = bytearray(data[8:33])
    ihdr[11] = 31
    ihdr[21:25] = zlib.crc32(bytes(ihdr[4:21])).to_bytes(4, "big")
    with pytest.raises(ValueError, match="inflates"):
        png_size(data[:8] + bytes(ihdr) + data[33:])
