"""POST /upload against a model service replaying the recorded sample answer."""

import base64
import json

import pytest
from conftest import MODEL_URL
from helpers import image_bytes, stored_files, upload

SAMPLE_AREAS = {"PI_Particle": 213, "PR_Peeling": 649, "Copper_Nodule": 4, "Env_Particle": 0}


def test_upload_stores_the_sample_and_answers_like_prd_example_1(
    client, model_service, sample_input, sample_analysis_bytes
):
    response = upload(client, sample_input)
    assert response.status_code == 201
    body = response.get_json()
    img_id = body["img_unique_id"]
    assert response.headers["Location"] == f"http://localhost/images/{img_id}"  # absolute
    assert body["success"] is True
    assert body["total_defects"] == 7
    assert body["defect_classes"] == {"PI_Particle": 5, "PR_Peeling": 1, "Copper_Nodule": 1}
    assert (body["image_width"], body["image_height"]) == (1792, 1792)
    assert body["processing_time_seconds"] == 0.6743
    assert body["filename"] == "segformer_input.jpeg"
    assert body["model"] == "nvidia/segformer-b2-aoi"
    assert body["timestamp"].endswith("Z") and body["timestamp"][:4] == img_id[:4]
    assert set(body["images"]) >= {"input", "combined", "mask", "overlay"}
    assert body["images"]["mask"] == f"http://localhost/download/image/{img_id}/mask"
    assert body["json_url"] == f"http://localhost/download/json/{img_id}"
    assert body["analysis_results"] == json.loads(sample_analysis_bytes)
    assert "overlay_image" not in body


def test_image_id_has_the_specified_shape(client, model_service, sample_input):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    date, time, suffix = img_id.split("_")
    assert len(date) == 8 and len(time) == 6 and date.isdigit() and time.isdigit()
    assert len(suffix) == 6 and suffix.isalnum() and suffix.upper() == suffix


def test_include_images_returns_the_models_pngs_as_base64(
    client, model_service, sample_input, sample_images
):
    body = upload(client, sample_input, include_images="true").get_json()
    for name in ("overlay", "combined", "mask"):
        assert base64.b64decode(body[f"{name}_image"]) == sample_images[name]


def test_classes_have_bare_names_and_the_sample_areas(client, model_service, sample_input):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    body = client.get(f"/images/{img_id}/classes").get_json()
    rows = body["classes"]
    assert [row["class_id"] for row in rows] == [1, 2, 3, 4]
    assert {row["class_name"]: row["total_area_pixels"] for row in rows} == SAMPLE_AREAS
    assert [row["total_regions"] for row in rows] == [5, 1, 1, 0]
    assert rows[0]["class_unique_id"] == f"{img_id}_1"


def test_regions_return_every_float_exactly(
    client, model_service, sample_input, sample_analysis_bytes
):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    body = client.get(f"/images/{img_id}/regions").get_json()
    assert body["img_unique_id"] == img_id
    assert body["total_regions"] == 7
    sample = json.loads(sample_analysis_bytes)["classes"]
    by_name = {c["class_name"]: c for c in body["classes"]}
    for key, expected in sample.items():
        got = by_name[key.split("_", 1)[1]]
        assert got["total_regions"] == expected["total_regions"]
        stripped = [
            {k: v for k, v in region.items() if k not in ("region_unique_id", "review")}
            for region in got["regions"]
        ]
        assert stripped == expected["regions"]  # == on floats: bit-for-bit
    first = by_name["PI_Particle"]["regions"][0]
    assert first["centroid"]["x"] == 1655.904761904762
    assert first["circularity"] == 0.750200171090617


def test_regions_filter_by_class(client, model_service, sample_input):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    body = client.get(f"/images/{img_id}/regions?class_name=PR_Peeling").get_json()
    assert [c["class_name"] for c in body["classes"]] == ["PR_Peeling"]
    assert body["total_regions"] == 1
    bad = client.get(f"/images/{img_id}/regions?class_name=Dust")
    assert bad.status_code == 400
    assert bad.get_json()["code"] == "INVALID_PARAMETER"
    assert "PI_Particle" in bad.get_json()["error"]


def test_image_detail_has_paths_urls_and_class_summary(client, model_service, sample_input):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    body = client.get(f"/images/{img_id}").get_json()
    day = img_id[:8]
    assert body["input_image_path"] == f"uploads/{day}/{img_id}_segformer_input.jpg"
    assert body["result_image_1_path"] == f"results/{day}/{img_id}/combined.png"
    assert body["result_image_2_path"] == f"results/{day}/{img_id}/mask.png"
    assert body["result_image_3_path"] == f"results/{day}/{img_id}/overlay.png"
    assert body["images"]["thumbnail"].endswith(f"/download/image/{img_id}/thumbnail")
    assert len(body["classes"]) == 4
    assert body["created_at"].endswith("Z")


def test_storage_layout_matches_the_spec(client, model_service, sample_input, storage_root):
    img_id = upload(client, sample_input).get_json()["img_unique_id"]
    day = img_id[:8]
    assert stored_files(storage_root) == [
        f"results/{day}/{img_id}/analysis.json",
        f"results/{day}/{img_id}/combined.png",
        f"results/{day}/{img_id}/mask.png",
        f"results/{day}/{img_id}/overlay.png",
        f"results/{day}/{img_id}/thumbnail.jpg",
        f"uploads/{day}/{img_id}_segformer_input.jpg",
    ]


def test_the_model_gets_field_image_with_an_accepted_extension(client, model_service, sample_input):
    img_id = upload(client, sample_input, name="晶圓 A.jpeg").get_json()["img_unique_id"]
    sent = model_service.request_history[0]
    assert sent.url == f"{MODEL_URL}/upload"
    # Named after the image's own id: the service files calls by second + name.
    assert f'name="image"; filename="{img_id}.jpg"'.encode() in sent.body


def test_cjk_names_are_kept_for_display_and_sanitised_for_disk(client, model_service, sample_input):
    body = upload(client, sample_input, name="../../晶圓 <b>1.jpeg").get_json()
    assert body["filename"] == "晶圓 <b>1.jpeg"
    detail = client.get(f"/images/{body['img_unique_id']}").get_json()
    stored_name = detail["input_image_path"].rsplit("/", 1)[1]
    assert stored_name == f"{body['img_unique_id']}_晶圓_b_1.jpg"


@pytest.mark.parametrize(
    ("fmt", "mode"), [("PNG", "L"), ("TIFF", "I;16"), ("BMP", "RGB"), ("JPEG", "RGB")]
)
def test_every_supported_format_is_accepted_by_content(client, model_service, fmt, mode):
    data = image_bytes(fmt, mode=mode)
    response = upload(client, data, name="no-extension")
    assert response.status_code == 201, response.get_json()


def test_concurrent_uploads_get_distinct_ids(app, model_service, sample_input):
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        with app.test_client() as client:
            return upload(client, sample_input).get_json()["img_unique_id"]

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(one, range(8)))
    assert len(set(ids)) == 8


def test_rows_are_inserted_with_one_statement_per_table(app, client, model_service, sample_input):
    """No ORM object per region: the image, its classes and its regions are one INSERT
    (an executemany for the lists) each, in one transaction."""
    from sqlalchemy import event

    from aoi_flask.extensions import db

    inserts, commits = [], []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT"):
            table = statement.split()[2].strip('`"')
            rows = len(parameters) if executemany else 1
            inserts.append((table, rows))

    def on_commit(conn):
        commits.append(conn)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        response = upload(client, sample_input)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
    assert response.status_code == 201
    assert inserts == [("images", 1), ("classes", 4), ("regions", 7)]
    assert len(commits) == 1
