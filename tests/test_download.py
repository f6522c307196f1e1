"""Downloads are byte-identical to what went in and what the model returned."""

import io

import pytest
from helpers import upload
from PIL import Image


@pytest.fixture
def img_id(client, model_service, sample_input):
    return upload(client, sample_input).get_json()["img_unique_id"]


def test_input_is_byte_identical(client, img_id, sample_input):
    response = client.get(f"/download/image/{img_id}/input")
    assert response.status_code == 200
    assert response.data == sample_input
    assert response.mimetype == "image/jpeg"
    assert f"filename={img_id}_input.jpg" in response.headers["Content-Disposition"]


@pytest.mark.parametrize("kind", ["combined", "mask", "overlay"])
def test_result_pngs_are_what_the_model_returned(client, img_id, sample_images, kind):
    response = client.get(f"/download/image/{img_id}/{kind}")
    assert response.status_code == 200
    assert response.data == sample_images[kind]
    assert response.mimetype == "image/png"
    assert f"filename={img_id}_{kind}.png" in response.headers["Content-Disposition"]


def test_json_is_the_analysis_as_received(client, img_id, sample_analysis_bytes):
    response = client.get(f"/download/json/{img_id}")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == sample_analysis_bytes


def test_thumbnail_is_a_small_jpeg(client, img_id):
    response = client.get(f"/download/image/{img_id}/thumbnail")
    image = Image.open(io.BytesIO(response.data))
    assert image.format == "JPEG"
    assert max(image.size) == 256


def test_conditional_get(client, img_id):
    first = client.get(f"/download/image/{img_id}/mask")
    again = client.get(
        f"/download/image/{img_id}/mask", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304


def test_unknown_type_and_unknown_image(client, img_id):
    bad = client.get(f"/download/image/{img_id}/secret")
    assert bad.status_code == 400
    assert "combined" in bad.get_json()["error"]
    missing = client.get("/download/image/20990101_000000_AAAAAA/mask")
    assert missing.status_code == 404
    assert missing.get_json()["code"] == "IMAGE_NOT_FOUND"
    assert client.get("/download/json/nope").status_code == 404


def test_missing_file_is_a_clear_404(client, img_id, storage_root):
    (storage_root / "results" / img_id[:8] / img_id / "mask.png").unlink()
    response = client.get(f"/download/image/{img_id}/mask")
    assert response.status_code == 404
    assert response.get_json()["code"] == "FILE_MISSING"


def test_stored_paths_outside_the_root_are_never_served(app, client, img_id):
    from aoi_flask.extensions import db
    from aoi_flask.models import Image as ImageRow

    with app.app_context():
        db.session.get(ImageRow, img_id).result_image_2_path = "../../../../etc/passwd"
        db.session.commit()
    response = client.get(f"/download/image/{img_id}/mask")
    assert response.status_code == 404
    assert b"root:" not in response.data
