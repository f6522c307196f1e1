"""png_size: the structural check of the model's PNGs (chunk CRCs, IHDR, the IDAT
zlib stream inflated through zlib-ng in bounded pieces to exactly IHDR's size)."""

import struct
import tracemalloc
import zlib

import pytest

from aoi_flask.services import imaging
from aoi_flask.services.imaging import InflatedSize, png_data_size, png_size

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_rows(width, height, seed=7):
    """Filter byte 0 plus `width` RGB pixels per row: compressible, not trivially."""
    row = bytes((seed * i + i // 7) % 251 for i in range(width * 3))
    return b"".join(b"\x00" + row[y % 5 :] + row[: y % 5] for y in range(height))


def png_with_stream(width, height, stream, piece=8192):
    """A PNG whose IDAT chunks carry `stream` (split like OpenCV does, 8 KiB each);
    every chunk CRC is right whatever the stream holds."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = [chunk(b"IDAT", stream[i : i + piece]) for i in range(0, len(stream), piece)]
    return SIGNATURE + chunk(b"IHDR", header) + b"".join(idat) + chunk(b"IEND", b"")


def png(width, height, **split):
    return png_with_stream(width, height, zlib.compress(raw_rows(width, height)), **split)


def test_a_complete_png_gives_its_size():
    assert png_size(png(40, 30)) == (40, 30)


@pytest.mark.parametrize("piece", [1, 13, 8192, 1 << 20])
def test_the_stream_may_be_split_over_any_number_of_idat_chunks(piece):
    assert png_size(png(64, 48, piece=piece)) == (64, 48)


def test_a_large_image_is_inflated_in_bounded_pieces(monkeypatch):
    """More than one input group and many output pieces: still exactly the size."""
    monkeypatch.setattr(imaging, "INFLATE_INPUT", 4096)
    monkeypatch.setattr(imaging, "INFLATE_CHUNK", 8192)
    assert png_size(png(700, 500)) == (700, 500)


def test_the_expected_size_counts_rows_and_filter_bytes():
    assert png_data_size(40, 30, 8, 2, 0) == 30 * (1 + 40 * 3)
    assert png_data_size(3, 2, 1, 0, 0) == 2 * (1 + 1)  # 3 one-bit pixels fit one byte


# ---- the verdicts of the inflate check, on the zlib-ng path --------------------------


def verdict(width, height, stream):
    try:
        return png_size(png_with_stream(width, height, stream))
    except ValueError as error:
        return str(error)


def test_data_that_inflates_to_less_than_ihdr_says_is_refused():
    stream = zlib.compress(raw_rows(40, 29))
    assert verdict(40, 30, stream) == f"image data inflates to {29 * 121} bytes, not {30 * 121}"


def test_data_that_inflates_to_more_than_ihdr_says_is_refused():
    assert "more than IHDR says" in verdict(40, 30, zlib.compress(raw_rows(40, 31)))


def test_a_bad_adler32_is_refused():
    stream = bytearray(zlib.compress(raw_rows(40, 30)))
    stream[-1] ^= 0x01  # the stream's last byte is the end of its Adler-32
    assert "does not inflate" in verdict(40, 30, bytes(stream))
    assert "incorrect data check" in verdict(40, 30, bytes(stream))


def test_a_stream_cut_short_is_refused_even_with_intact_chunks():
    stream = zlib.compress(raw_rows(40, 30))
    assert "truncated" in verdict(40, 30, stream[:-6])
    assert "truncated" in verdict(40, 30, stream[: len(stream) // 2])


def test_corrupt_deflate_data_is_refused():
    stream = bytearray(zlib.compress(raw_rows(40, 30)))
    stream[0] = 0x00  # not a zlib header
    assert "does not inflate" in verdict(40, 30, bytes(stream))


def test_no_image_data_at_all_is_refused():
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    data = SIGNATURE + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="truncated"):
        png_size(data)


def test_bytes_after_the_end_of_the_stream_are_ignored():
    """As libpng and Pillow do: the stream ended with the right size and Adler-32."""
    stream = zlib.compress(raw_rows(40, 30))
    assert verdict(40, 30, stream + b"trailing bytes") == (40, 30)


def test_a_bomb_is_stopped_at_the_declared_size_with_bounded_memory():
    """40x30 declared, 64 MB of zeros sent (~64 kB compressed): refused as soon as the
    output passes what IHDR allows, without ever holding much of it."""
    bomb = zlib.compress(bytes(64 << 20), 9)
    tracemalloc.start()
    try:
        assert "more than IHDR says" in verdict(40, 30, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * imaging.INFLATE_CHUNK + len(bomb) * 2


def test_inflated_size_alone_reports_each_verdict():
    stream = zlib.compress(b"x" * 1000)
    counter = InflatedSize(1000)
    for i in range(0, len(stream), 3):
        counter.add(memoryview(stream)[i : i + 3])
    counter.finish()
    assert counter.produced == 1000
    short = InflatedSize(1001)
    short.add(stream)
    with pytest.raises(ValueError, match="1000 bytes, not 1001"):
        short.finish()
    cut = InflatedSize(1000)
    cut.add(stream[:-4])
    with pytest.raises(ValueError, match="truncated"):
        cut.finish()


# ---- structure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:-12], "no IEND"),
        (lambda d: d[: len(d) // 2], "past the end"),
        (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:], "bad CRC"),
        (lambda d: b"GIF89a" + d[6:], "not a PNG"),
        (lambda d: d[:8] + d[33:], "IHDR must come first"),
    ],
)
def test_damaged_structure_is_refused(damage, reason):
    with pytest.raises(ValueError, match=reason):
        png_size(damage(png(40, 30)))
