"""Content sniffing, decoding, names and storage helpers."""

import pytest
from helpers import image_bytes

from aoi_flask.services.imaging import (
    InvalidImage,
    check_image,
    disk_name,
    display_name,
    sniff_format,
)
from aoi_flask.services.storage import Storage


@pytest.mark.parametrize(
    ("fmt", "expected"), [("JPEG", "jpeg"), ("PNG", "png"), ("TIFF", "tiff"), ("BMP", "bmp")]
)
def test_sniffs_by_content(fmt, expected):
    assert sniff_format(image_bytes(fmt, mode="RGB")) == expected


def test_rejects_content_of_other_types():
    assert sniff_format(b"GIF89a") is None
    assert sniff_format(b"%PDF-1.7") is None


def test_check_image_reports_size_and_thumbnail():
    checked = check_image(image_bytes("PNG", size=(600, 300)), max_pixels=10**6, thumbnail_size=100)
    assert (checked.format, checked.width, checked.height) == ("png", 600, 300)
    assert checked.thumbnail.startswith(b"\xff\xd8\xff")


def test_mislabelled_content_is_undecodable():
    with pytest.raises(InvalidImage) as caught:
        check_image(b"BM" + b"\x00" * 100, max_pixels=10**6, thumbnail_size=64)
    assert caught.value.code == "UNDECODABLE_IMAGE"


@pytest.mark.parametrize(
    ("given", "shown", "on_disk"),
    [
        ("../../etc/passwd.png", "passwd.png", "passwd.png"),
        ("C:\\Users\\qc\\wafer 1.bmp", "wafer 1.bmp", "wafer_1.png"),
        ("/abs/path/x.jpg", "x.jpg", "x.png"),
        ("nul\x00byte.png", "nulbyte.png", "nulbyte.png"),
        ("晶圓檢測.tif", "晶圓檢測.tif", "晶圓檢測.png"),
        (".hidden", ".hidden", "image.png"),
        ("...", "...", "image.png"),
        ("a" * 400 + ".png", "a" * 255, "a" * 80 + ".png"),
    ],
)
def test_names_are_kept_for_display_and_sanitised_for_disk(given, shown, on_disk):
    assert display_name(given) == shown
    assert disk_name(given, "png") == on_disk


def test_storage_never_resolves_outside_its_root(tmp_path):
    storage = Storage(tmp_path)
    assert storage.path("results/a.png") == tmp_path / "results" / "a.png"
    for bad in ("../x", "/etc/passwd", "results/../../x", ""):
        with pytest.raises(FileNotFoundError):
            storage.path(bad)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    storage = Storage(tmp_path)
    storage.write_atomic("results/d/f.bin", b"data")
    assert (tmp_path / "results/d/f.bin").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "results/d").iterdir()] == ["f.bin"]


def test_reserved_ids_are_unique(tmp_path):
    from datetime import datetime

    storage = Storage(tmp_path)
    moment = datetime(2026, 2, 24, 17, 38, 19)
    ids = {storage.reserve_result_dir(moment)[0] for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith("20260224_173819_") for i in ids)
