"""Hostile uploads and downloads (SPEC §6): every bad input gets a clear 4xx JSON
error and leaves nothing behind; names can never steer a path; downloads never
serve anything outside the storage root."""

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from helpers import image_bytes, stored_files, upload, upload_batch
from PIL import Image, ImageFile

from aoi_flask.extensions import db
from aoi_flask.models import Batch, BatchItem
from aoi_flask.models import Image as ImageRow

SECRET = b"TOP-SECRET-OUTSIDE-THE-STORAGE-ROOT"


# ---- hostile content ---------------------------------------------------------------


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width=100_000, height=100_000):
    """A tiny, valid-looking PNG whose header claims 10 gigapixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024, 9))
        + png_chunk(b"IEND", b"")
    )


def jpeg_bomb():
    """A real small JPEG whose frame header (SOF0) is patched to 65000x65000."""
    data = bytearray(image_bytes("JPEG", size=(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    return bytes(data)


def zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("wafer.png", image_bytes("PNG"))
    return buffer.getvalue()


def gif_bytes():
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


REFUSED_TYPES = {
    "gif": gif_bytes(),
    "pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
    "html": b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    "svg-bare": b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
    "zip": zip_bytes(),
}

ACCEPTED_TYPES = {
    "jpeg": ("JPEG", "RGB", "jpg"),
    "png": ("PNG", "L", "png"),
    "tiff": ("TIFF", "L", "tif"),
    "bmp": ("BMP", "RGB", "bmp"),
}


def truncated(fmt):
    data = image_bytes(fmt, size=(300, 200), mode="RGB")
    return data[: len(data) // 2]


def png_without_end():
    """Pixel data complete, the closing IEND chunk cut off (an interrupted copy)."""
    return image_bytes("PNG", size=(300, 200), mode="RGB")[:-10]


BAD_CONTENT = [
    *(
        (f"refused-{kind}", data, "wafer.png", 400, "UNSUPPORTED_FORMAT")
        for kind, data in REFUSED_TYPES.items()
    ),
    ("png-bomb", png_bomb(), "bomb.png", 400, "IMAGE_TOO_MANY_PIXELS"),
    ("jpeg-bomb", jpeg_bomb(), "bomb.jpg", 400, "IMAGE_TOO_MANY_PIXELS"),
    *(
        (f"truncated-{fmt}", truncated(fmt), "cut.img", 400, "UNDECODABLE_IMAGE")
        for fmt in ("JPEG", "PNG", "TIFF", "BMP")
    ),
    ("png-without-iend", png_without_end(), "cut.png", 400, "UNDECODABLE_IMAGE"),
    ("bmp-magic-only", b"BM" + b"\x00" * 200, "x.bmp", 400, "UNDECODABLE_IMAGE"),
    ("zero-bytes", b"", "empty.png", 400, "EMPTY_FILE"),
]


@pytest.fixture(scope="module")
def small_input():
    """A small valid JPEG: the mocked model answers with the sample analysis anyway."""
    return image_bytes("JPEG", size=(64, 48), mode="RGB")


def assert_nothing_stored(app, storage_root):
    with app.app_context():
        assert db.session.query(ImageRow).count() == 0
    assert [p for p in stored_files(storage_root) if not p.endswith(".gitkeep")] == []
    assert list((storage_root / "results").rglob("*")) == []
    assert list((storage_root / "uploads").rglob("*")) == []


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == code, body
    assert len(body["error"]) > 20
    return body


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [case[1:] for case in BAD_CONTENT],
    ids=[case[0] for case in BAD_CONTENT],
)
def test_bad_content_is_refused_by_upload(
    client, app, storage_root, model_service, data, name, status, code
):
    assert_error(upload(client, data, name=name), status, code)
    assert model_service.call_count == 0
    assert_nothing_stored(app, storage_root)


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [case[1:] for case in BAD_CONTENT],
    ids=[case[0] for case in BAD_CONTENT],
)
def test_bad_content_is_a_per_file_error_in_a_batch(
    client, app, storage_root, model_service, data, name, status, code
):
    response = upload_batch(client, [(data, name)])
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["processed"], body["failed"]) == (0, 1)
    row = body["results"][0]
    assert (row["success"], row["code"], row["filename"]) == (False, code, name)
    assert len(row["error"]) > 20
    assert model_service.call_count == 0
    assert_nothing_stored(app, storage_root)
    with app.app_context():
        item = db.session.query(BatchItem).one()
        assert (item.state, item.input_path, item.result_dir) == ("failed", None, None)


def test_a_bad_file_does_not_fail_the_rest_of_its_batch(
    client, storage_root, model_service, small_input
):
    files = [(REFUSED_TYPES["html"], "a.png"), (small_input, "good.jpg"), (png_bomb(), "b.png")]
    body = upload_batch(client, files).get_json()
    assert [r["success"] for r in body["results"]] == [False, True, False]
    inputs = list((storage_root / "uploads").rglob("*.*"))
    assert [p.name.split("_", 3)[-1] for p in inputs] == ["good.jpg"]


def test_a_bomb_is_refused_from_its_header_without_decoding(client, monkeypatch):
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spying_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    body = assert_error(upload(client, png_bomb(), name="bomb.png"), 400, "IMAGE_TOO_MANY_PIXELS")
    assert "100000x100000" in body["error"]
    assert decoded == []
    assert len(png_bomb()) < 200


@pytest.mark.parametrize("fmt", sorted(ACCEPTED_TYPES))
@pytest.mark.parametrize("name", ["wafer.gif", "report.pdf", "page.html", "no-extension"])
def test_supported_images_are_accepted_by_content_whatever_the_name(
    client, model_service, storage_root, fmt, name
):
    pil_format, mode, extension = ACCEPTED_TYPES[fmt]
    response = upload(client, image_bytes(pil_format, mode=mode), name=name)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["filename"] == name
    (stored,) = (storage_root / "uploads").rglob("*.*")
    assert stored.suffix == f".{extension}"  # the extension follows the content


# ---- hostile names -----------------------------------------------------------------------

HOSTILE_NAMES = [
    # (id, name sent, name shown)
    ("dotdot", "../../../etc/passwd.png", "passwd.png"),
    ("dotdot-windows", "..\\..\\windows\\win.ini.png", "win.ini.png"),
    ("absolute", "/etc/cron.d/evil.png", "evil.png"),
    ("absolute-windows", "C:\\Windows\\System32\\evil.png", "evil.png"),
    ("nul", "wafer\x00.png", "wafer.png"),
    ("nul-extension", "evil.php\x00.png", "evil.php.png"),
    ("html", "<img src=x onerror=alert(1)>.png", "<img src=x onerror=alert(1)>.png"),
    ("html-svg", "<svg onload=alert(1)>.png", "<svg onload=alert(1)>.png"),
    ("html-closing-tag", "<b>bold</b>.png", "b>.png"),  # `/` splits it like a path
    ("control-chars", "tab\there\x1b[31m\x7f.png", "tabhere[31m.png"),
    ("percent-encoded", "..%2F..%2Fetc%2Fpasswd.png", "..%2F..%2Fetc%2Fpasswd.png"),
    ("cjk", "晶圓檢測_第1批.png", "晶圓檢測_第1批.png"),
    ("cjk-path", "../資料/晶圓.png", "晶圓.png"),
]


def assert_safe_path(relpath, storage_root):
    uploads = (storage_root / "uploads").resolve()
    target = (storage_root / relpath).resolve()
    assert uploads in target.parents, relpath
    assert target.is_file()
    assert "\x00" not in relpath and "\\" not in relpath and "<" not in relpath
    assert len(target.name) <= 120


@pytest.mark.parametrize(
    ("name", "shown"), [case[1:] for case in HOSTILE_NAMES], ids=[c[0] for c in HOSTILE_NAMES]
)
def test_hostile_names_are_kept_for_display_and_sanitised_for_disk(
    client, app, model_service, storage_root, small_input, name, shown
):
    response = upload(client, small_input, name=name)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["filename"] == shown
    with app.app_context():
        row = db.session.get(ImageRow, body["img_unique_id"])
        assert row.original_filename == shown
        assert_safe_path(row.input_image_path, storage_root)
        assert row.input_image_path.startswith("uploads/")
    # Nothing was written anywhere but uploads/ and results/.
    assert {p.split("/", 1)[0] for p in stored_files(storage_root)} == {"uploads", "results"}
    assert not (storage_root.parent / "etc").exists()


@pytest.mark.parametrize(
    ("name", "shown"), [case[1:] for case in HOSTILE_NAMES], ids=[c[0] for c in HOSTILE_NAMES]
)
def test_hostile_names_in_a_batch(
    client, app, model_service, storage_root, small_input, name, shown
):
    body = upload_batch(client, [(small_input, name), (b"GIF89a", name)]).get_json()
    good, bad = body["results"]
    assert (good["success"], good["filename"]) == (True, shown)
    # A refused file is listed under its display name too, never the raw one.
    assert (bad["success"], bad["code"], bad["filename"]) == (False, "UNSUPPORTED_FORMAT", shown)
    with app.app_context():
        items = db.session.query(BatchItem).order_by(BatchItem.file_index).all()
        assert [item.filename for item in items] == [shown, shown]
        assert_safe_path(items[0].input_path, storage_root)


def test_very_long_names_are_shortened(client, app, model_service, storage_root, small_input):
    name = "晶" * 600 + "a" * 600 + ".png"
    body = upload(client, small_input, name=name).get_json()
    assert body["filename"] == name[:255]
    with app.app_context():
        row = db.session.get(ImageRow, body["img_unique_id"])
        assert_safe_path(row.input_image_path, storage_root)


def test_very_long_names_of_refused_files_do_not_break_a_batch(
    client, app, model_service, storage_root, small_input
):
    """The failed item's name goes into a VARCHAR(500): it must be the shortened one."""
    name = "x" * 1200 + ".png"
    response = upload_batch(client, [(b"%PDF-1.7", name), (small_input, "ok.jpg")])
    assert response.status_code == 200, response.get_data(as_text=True)
    bad, good = response.get_json()["results"]
    assert bad["filename"] == name[:255] and bad["code"] == "UNSUPPORTED_FORMAT"
    assert good["success"] is True
    with app.app_context():
        assert db.session.query(Batch).count() == 1


def test_a_name_of_only_slashes_or_dots_still_gets_a_safe_disk_name(
    client, app, model_service, storage_root, small_input
):
    for name in ("..", "/", "./.", "...."):
        body = upload(client, small_input, name=name).get_json()
        with app.app_context():
            row = db.session.get(ImageRow, body["img_unique_id"])
            assert_safe_path(row.input_image_path, storage_root)
            assert row.input_image_path.endswith("_image.jpg")


# ---- downloads never leave the storage root --------------------------------------------


@pytest.fixture
def secret_file(tmp_path):
    """A file next to (outside) the storage root."""
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def img_id(client, model_service, small_input):
    return upload(client, small_input).get_json()["img_unique_id"]


def assert_not_served(response, where=""):
    assert response.status_code in (400, 404), (where, response.status_code, response.data[:200])
    assert SECRET not in response.data
    assert b"root:" not in response.data
    assert response.get_json()["success"] is False


ESCAPING_URLS = [
    "/download/image/..%2F..%2F..%2Fsecret.txt/input",
    "/download/image/%2E%2E%2Fsecret.txt/input",
    "/download/image/..%252Fsecret.txt/input",
    "/download/image/%2Fetc%2Fpasswd/input",
    "/download/image/..%5C..%5Csecret.txt/input",
    "/download/image/..%00/input",
    "/download/image/{id}/..%2F..%2Fsecret.txt",
    "/download/image/{id}/..",
    "/download/image/{id}/json",
    "/download/image/{id}/input%00",
    "/download/json/..",
    "/download/json/%2E%2E",
    "/download/json/..%2F..%2Fsecret.txt",
    "/download/json/%2Fetc%2Fpasswd",
    "/download/json//etc/passwd",
    "/download/batch/..%2F..",
    "/download/batch/%2Fetc%2Fpasswd",
]


def test_download_urls_cannot_escape_the_root(client, img_id, secret_file):
    for url in ESCAPING_URLS:
        response = client.get(url.format(id=img_id), follow_redirects=True)
        assert_not_served(response, url)


def tampered_paths(storage_root, secret_file, img_id):
    link = storage_root / "results" / "link.png"
    link.symlink_to(secret_file)
    return [
        "../secret.txt",
        str(secret_file),  # an absolute path
        "results/../../secret.txt",
        f"results/{img_id[:8]}/{img_id}/../../../../secret.txt",
        "results/link.png",  # a symlink inside the root that points outside
        "uploads/\x00../../secret.txt",
        "/etc/passwd",
    ]


COLUMNS = {
    "input": "input_image_path",
    "combined": "result_image_1_path",
    "mask": "result_image_2_path",
    "overlay": "result_image_3_path",
    "thumbnail": "thumbnail_path",
}


def tamper(app, img_id, **columns):
    with app.app_context():
        row = db.session.get(ImageRow, img_id)
        for column, value in columns.items():
            setattr(row, column, value)
        db.session.commit()


def test_tampered_rows_never_serve_files_outside_the_root(
    app, client, img_id, storage_root, secret_file
):
    for path in tampered_paths(storage_root, secret_file, img_id):
        for kind, column in COLUMNS.items():
            tamper(app, img_id, **{column: path})
            response = client.get(f"/download/image/{img_id}/{kind}")
            assert_not_served(response, (path, kind))
            assert response.get_json()["code"] == "FILE_MISSING", (path, kind)
        tamper(app, img_id, analysis_json_path=path)
        assert_not_served(client.get(f"/download/json/{img_id}"))


def test_tampered_rows_never_reach_a_batch_zip(
    app, client, model_service, small_input, storage_root, secret_file
):
    body = upload_batch(client, [(small_input, "a.jpg")]).get_json()
    img_id = body["results"][0]["img_unique_id"]
    for path in tampered_paths(storage_root, secret_file, img_id):
        tamper(app, img_id, **dict.fromkeys([*COLUMNS.values(), "analysis_json_path"], path))
        response = client.get(f"/download/batch/{body['batch_id']}")
        assert response.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(response.data))
        for name in archive.namelist():
            assert SECRET not in archive.read(name), (path, name)


def test_deleting_a_tampered_row_never_removes_shared_folders_or_outside_files(
    app, client, model_service, small_input, storage_root, secret_file
):
    keep = upload(client, small_input, name="keep.jpg").get_json()["img_unique_id"]
    victim = upload(client, small_input, name="victim.jpg").get_json()["img_unique_id"]
    before = {p for p in stored_files(storage_root) if keep in p}
    tamper(
        app,
        victim,
        input_image_path="../secret.txt",
        result_image_1_path="./combined.png",  # its folder would be the root itself
        analysis_json_path=f"results/{keep[:8]}/analysis.json",  # a whole day folder
    )
    assert client.delete(f"/images/{victim}").status_code in (200, 204)
    assert secret_file.read_bytes() == SECRET
    assert {p for p in stored_files(storage_root) if keep in p} == before
    assert client.get(f"/download/image/{keep}/mask").status_code == 200
    assert Path(storage_root / "uploads").is_dir() and Path(storage_root / "results").is_dir()


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        # Browsers (WHATWG): backslashes literal, quotes percent-encoded.
        ('form-data; name="image"; filename="C:\\dir\\a.png"', "C:\\dir\\a.png"),
        ('form-data; name="image"; filename="say %22hi%22.png"', 'say "hi".png'),
        # curl and RFC-style clients escape with backslashes.
        ('form-data; name="image"; filename="C:\\\\dir\\\\a.png"', "C:\\\\dir\\\\a.png"),
        ('form-data; name="image"; filename="say \\"hi\\".png"', 'say "hi".png'),
        ('form-data; name="image"; filename="a.png"; size=3', "a.png"),
    ],
)
def test_submitted_filename_reads_the_header_as_clients_write_it(disposition, name):
    from werkzeug.datastructures import FileStorage, Headers

    from aoi_flask.upload import submitted_filename

    file = FileStorage(headers=Headers({"Content-Disposition": disposition}), filename="x")
    assert submitted_filename(file) == name


def test_doubled_backslashes_still_split_the_directory_off():
    from aoi_flask.services.imaging import display_name

    assert display_name("C:\\\\Windows\\\\System32\\\\evil.png") == "evil.png"
