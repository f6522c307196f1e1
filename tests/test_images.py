"""GET/DELETE /images/{id}."""

from helpers import stored_files, upload

from aoi_flask.extensions import db
from aoi_flask.models import DefectClass, Region


def test_delete_removes_rows_and_files(app, client, model_service, sample_input, storage_root):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    other = upload(client, sample_input).get_json()["img_unique_id"]
    response = client.delete(f"/images/{img_id}")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "img_unique_id": img_id, "deleted": True}
    assert client.get(f"/images/{img_id}").status_code == 404
    assert not [path for path in stored_files(storage_root) if img_id in path]
    assert [path for path in stored_files(storage_root) if other in path]
    with app.app_context():
        assert db.session.query(DefectClass).filter_by(img_unique_id=img_id).count() == 0
        assert db.session.query(Region).filter_by(img_unique_id=img_id).count() == 0
        assert db.session.query(Region).filter_by(img_unique_id=other).count() == 7


def test_unknown_image_is_404_everywhere(client):
    for path in ("/images/x", "/images/x/classes", "/images/x/regions"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["code"] == "IMAGE_NOT_FOUND"
        assert "GET /images" in response.get_json()["error"]
    assert client.delete("/images/x").status_code == 404
