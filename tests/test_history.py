"""GET /images (history), GET /query/defects (region search) and GET /stats."""

import base64
import csv
import io
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from conftest import MODEL_URL
from helpers import echo, image_bytes, png_bytes, upload, upload_batch

from aoi_flask.extensions import db
from aoi_flask.models import CLASS_NAMES, Image


@pytest.fixture
def light_answer(sample_answer):
    """The sample analysis with tiny PNGs: the same rows, stored in a fraction of the time."""
    tiny = base64.b64encode(png_bytes(np.zeros((4, 4, 3), np.uint8))).decode()
    return {**sample_answer, "overlay_image": tiny, "combined_image": tiny, "mask_image": tiny}


@pytest.fixture
def history(app, client, model_service, light_answer):
    """Five stored sample results with timestamps one day apart (oldest first)."""
    model_service.post(f"{MODEL_URL}/upload", json=echo(light_answer))
    ids = [
        upload(client, image_bytes(), name=f"w{i}.jpg").get_json()["img_unique_id"]
        for i in range(5)
    ]
    with app.app_context():
        base = datetime(2026, 3, 1, 8, 0, 0)
        for offset, img_id in enumerate(ids):
            image = db.session.get(Image, img_id)
            image.timestamp = base + timedelta(days=offset)
            image.total_defects = offset  # so sorting by defects is observable
        db.session.commit()
    return ids


def get(client, path, **params):
    response = client.get(path, query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_list_is_newest_first_with_prd_fields(client, history):
    body = get(client, "/images")
    assert (body["total"], body["page"], body["limit"], body["pages"]) == (5, 1, 20, 1)
    assert [i["img_unique_id"] for i in body["images"]] == history[::-1]
    first = body["images"][0]
    for field in (
        "timestamp",
        "image_height",
        "image_width",
        "processing_time_seconds",
        "total_defects",
        "input_image_path",
        "filename",
        "batch_id",
        "defect_classes",
        "thumbnail_url",
    ):
        assert field in first
    assert first["timestamp"] == "2026-03-05T08:00:00Z"
    assert first["filename"] == "w4.jpg"
    assert first["defect_classes"] == {"PI_Particle": 5, "PR_Peeling": 1, "Copper_Nodule": 1}
    assert first["thumbnail_url"].endswith(f"/download/image/{history[4]}/thumbnail")


def test_pagination_edges(client, history):
    pages = [get(client, "/images", limit=2, page=p) for p in (1, 2, 3, 4)]
    assert [len(p["images"]) for p in pages] == [2, 2, 1, 0]
    assert all(p["pages"] == 3 and p["total"] == 5 for p in pages)
    seen = [i["img_unique_id"] for p in pages for i in p["images"]]
    assert seen == history[::-1]
    assert get(client, "/images", limit=500)["limit"] == 500


def test_sorts(client, history):
    oldest = get(client, "/images", sort="oldest")["images"]
    assert [i["img_unique_id"] for i in oldest] == history
    most = get(client, "/images", sort="most_defects")["images"]
    assert [i["total_defects"] for i in most] == [4, 3, 2, 1, 0]
    fewest = get(client, "/images", sort="fewest_defects")["images"]
    assert [i["total_defects"] for i in fewest] == [0, 1, 2, 3, 4]


def test_date_window_is_inclusive(client, history):
    body = get(client, "/images", start_date="2026-03-02", end_date="2026-03-04")
    assert [i["img_unique_id"] for i in body["images"]] == history[3:0:-1]
    exact = get(
        client, "/images", start_date="2026-03-02T08:00:00Z", end_date="2026-03-03T08:00:00Z"
    )
    assert exact["total"] == 2
    offset = get(client, "/images", start_date="2026-03-02T16:00:00+08:00", end_date="2026-03-02")
    assert offset["total"] == 1  # 16:00+08:00 is 08:00 UTC


def test_class_filter_only_images_that_have_the_class(client, history, model_service, light_answer):
    empty = json.loads(json.dumps(light_answer))
    for item in empty["analysis_results"]["classes"].values():
        item.update(total_regions=0, total_area_pixels=0, regions=[])
    model_service.post(f"{MODEL_URL}/upload", json=echo(empty))
    clean = upload(client, image_bytes(), name="clean.png").get_json()["img_unique_id"]
    assert get(client, "/images", class_name="PI_Particle")["total"] == 5
    assert get(client, "/images", class_name="Env_Particle")["total"] == 0
    assert get(client, "/images")["total"] == 6
    assert clean not in [
        i["img_unique_id"] for i in get(client, "/images", class_name="PR_Peeling")["images"]
    ]


def test_batch_filter(client, model_service, history):
    batch = upload_batch(client, [(image_bytes(), "b.png")]).get_json()
    body = get(client, "/images", batch_id=batch["batch_id"])
    assert body["total"] == 1 and body["images"][0]["batch_id"] == batch["batch_id"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-13-01"}, "end_date"),
        ({"start_date": "2026-03-05", "end_date": "2026-03-01"}, "start_date"),
        ({"class_name": "Dust"}, "class_name"),
        ({"sort": "random"}, "sort"),
    ],
)
def test_bad_history_parameters_name_the_field(client, params, field):
    response = client.get("/images", query_string=params)
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "INVALID_PARAMETER"
    assert field in body["details"]["fields"]
    assert field in body["error"]


# ---- region search ---------------------------------------------------------------------


def test_region_search_filters(client, history):
    body = get(client, "/query/defects", class_name="PI_Particle", limit=100)
    assert body["total"] == 25
    assert {r["class_name"] for r in body["regions"]} == {"PI_Particle"}
    area = get(client, "/query/defects", min_area=50, max_area=200)
    assert area["total"] == 10  # areas 114 and 58 in each of five images
    assert all(50 <= r["area_pixels"] <= 200 for r in area["regions"])
    round_ones = get(client, "/query/defects", min_circularity=0.8)
    assert {r["area_pixels"] for r in round_ones["regions"]} == {114}
    long_ones = get(client, "/query/defects", min_aspect_ratio=3, max_aspect_ratio=4)
    assert {r["aspect_ratio"] for r in long_ones["regions"]} == {3.6512962286397217}
    one = get(client, "/query/defects", img_unique_id=history[0])
    assert one["total"] == 7
    window = get(client, "/query/defects", start_date="2026-03-05", end_date="2026-03-05")
    assert {r["img_unique_id"] for r in window["regions"]} == {history[4]}


def test_region_rows_carry_exact_values(client, history):
    body = get(client, "/query/defects", img_unique_id=history[0], sort="area_desc")
    top = body["regions"][0]
    assert top["class_name"] == "PR_Peeling" and top["area_pixels"] == 649
    assert top["centroid"] == {"x": 1773.5097765363128, "y": 738.4441340782123}
    assert top["bounding_box"] == {"x": 1753, "y": 706, "width": 39, "height": 61}
    assert top["timestamp"] == "2026-03-01T08:00:00Z"
    assert top["filename"] == "w0.jpg"


def test_region_search_pagination_and_sorts(client, history):
    pages = [get(client, "/query/defects", limit=10, page=p, sort="area_asc") for p in (1, 2, 3, 4)]
    assert [len(p["regions"]) for p in pages] == [10, 10, 10, 5]
    areas = [r["area_pixels"] for p in pages for r in p["regions"]]
    assert areas == sorted(areas)
    circ = get(client, "/query/defects", sort="circularity_desc", limit=500)["regions"]
    assert [r["circularity"] for r in circ] == sorted(
        (r["circularity"] for r in circ), reverse=True
    )


def test_csv_rows_equal_json_rows(client, history):
    params = {"class_name": "PI_Particle", "min_area": 1, "sort": "area_desc", "limit": 500}
    rows = get(client, "/query/defects", **params)["regions"]
    response = client.get("/query/defects", query_string={**params, "format": "csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(table) == len(rows) == 20
    for line, row in zip(table, rows, strict=True):
        assert line["region_unique_id"] == row["region_unique_id"]
        assert float(line["centroid_x"]) == row["centroid"]["x"]
        assert float(line["perimeter"]) == row["perimeter"]
        assert int(line["bbox_width"]) == row["bounding_box"]["width"]
        assert line["class_name"] == row["class_name"]
        assert line["timestamp"] == row["timestamp"]


def test_csv_without_limit_exports_everything(client, history):
    response = client.get("/query/defects?format=csv")
    assert len(response.get_data(as_text=True).strip().splitlines()) == 1 + 35


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_area": "-1"}, "min_area"),
        ({"min_area": "big"}, "min_area"),
        ({"min_area": "10", "max_area": "5"}, "min_area"),
        ({"min_circularity": "nan"}, "min_circularity"),
        ({"sort": "colour"}, "sort"),
        ({"format": "xml"}, "format"),
        ({"limit": "1000"}, "limit"),
    ],
)
def test_bad_region_search_parameters(client, params, field):
    response = client.get("/query/defects", query_string=params)
    assert response.status_code == 400
    assert field in response.get_json()["details"]["fields"]


# ---- statistics ----------------------------------------------------------------------------


def test_stats_totals_classes_and_daily(client, history):
    body = get(client, "/stats")
    assert body["totals"] == {"images": 5, "regions": 0 + 1 + 2 + 3 + 4, "batches": 0}
    by_class = {c["class_name"]: c for c in body["classes"]}
    assert by_class["PI_Particle"] == {
        "class_id": 1,
        "class_name": "PI_Particle",
        "images": 5,
        "regions": 25,
        "area_pixels": 1065,
    }
    assert by_class["Env_Particle"]["images"] == 0
    assert body["processing_time"]["mean"] == pytest.approx(0.6743)
    assert body["date_range"] == {"first": "2026-03-01T08:00:00Z", "last": "2026-03-05T08:00:00Z"}
    assert [d["date"] for d in body["daily"]] == [f"2026-03-0{d}" for d in range(1, 6)]
    assert [d["defects"] for d in body["daily"]] == [0, 1, 2, 3, 4]
    assert body["storage"]["bytes_used"] > 5 * 500


def test_stats_window(client, history):
    body = get(client, "/stats", start_date="2026-03-04", end_date="2026-03-05")
    assert body["totals"]["images"] == 2
    assert {c["class_name"]: c["images"] for c in body["classes"]}["PR_Peeling"] == 2
    assert len(body["daily"]) == 2
    empty = get(client, "/stats", start_date="2030-01-01")
    assert empty["totals"]["images"] == 0 and empty["daily"] == []
    assert client.get("/stats?end_date=someday").status_code == 400


ZERO_CLASSES = [
    {"class_id": class_id, "class_name": name, "images": 0, "regions": 0, "area_pixels": 0}
    for class_id, name in CLASS_NAMES.items()
]


def test_stats_always_lists_the_four_classes(client, history):
    """An empty window, and an empty database, answer in the same shape as a full one."""
    empty = get(client, "/stats", start_date="2030-01-01")
    assert empty["classes"] == ZERO_CLASSES
    full = get(client, "/stats")
    assert [c["class_name"] for c in full["classes"]] == [c["class_name"] for c in ZERO_CLASSES]


def test_stats_of_an_empty_database_list_the_four_classes(client):
    assert get(client, "/stats")["classes"] == ZERO_CLASSES
    assert get(client, "/stats", end_date="2026-01-01")["classes"] == ZERO_CLASSES


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/images", {"clas_name": "PI_Particle"}),
        ("/query/defects", {"format": "csv", "clas_name": "PI_Particle"}),
        ("/stats", {"start": "2026-02-24"}),
        ("/batches", {"pgae": "2"}),
    ],
)
def test_a_misspelled_parameter_is_refused_not_ignored(client, path, query):
    response = client.get(path, query_string=query)
    assert response.status_code == 400 and response.mimetype == "application/json"
    body = response.get_json()
    (typo,) = body["details"]["unknown"]
    assert body["code"] == "INVALID_PARAMETER" and repr(typo) in body["error"]
    assert set(query) - {typo} <= set(body["details"]["allowed"])
    assert ", ".join(body["details"]["allowed"]) in body["error"]


def test_the_refusal_suggests_the_parameter_meant(client):
    body = client.get("/images?clas_name=PI_Particle").get_json()
    assert "did you mean class_name?" in body["error"]
    assert body["details"]["allowed"] == [
        "batch_id",
        "class_name",
        "end_date",
        "layer",
        "limit",
        "lot_id",
        "operator",
        "page",
        "recipe",
        "reviewed",
        "sort",
        "start_date",
        "tool_id",
        "wafer_id",
    ]
