"""Review of detected regions (issue #16): dispositions, the image's reviewed mark,
the append-only review log, named API keys, and the statistics reviews imply."""

import io

import pytest
from sqlalchemy import func, select

from aoi_flask.extensions import db
from aoi_flask.models import DefectClass, Region, RegionReview, ReviewLogEntry
from aoi_flask.security import parse_key

KEY1 = "qc-line1-secret-0123456789"
PLAIN = "plain-secret-key-0123456789"


def upload_one(client, data, **fields):
    response = client.post(
        "/upload",
        data={"image": (io.BytesIO(data), "wafer.jpeg"), **fields},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["img_unique_id"]


def region_ids(client, img_id):
    body = client.get(f"/images/{img_id}/regions").get_json()
    return [r["region_unique_id"] for c in body["classes"] for r in c["regions"]]


def patch(client, img_id, region_id, body, **kwargs):
    return client.patch(f"/images/{img_id}/regions/{region_id}", json=body, **kwargs)


@pytest.fixture
def img_id(client, model_service, sample_input):
    return upload_one(client, sample_input, tool_id="AOI-3", lot_id="LOT-A")


def test_a_disposition_is_stored_beside_the_models_values(app, client, img_id):
    region_id = f"{img_id}_1_1"
    response = patch(
        client,
        img_id,
        region_id,
        {"disposition": "true_defect", "reviewer_class_name": "Env_Particle", "comment": "dust"},
    )
    assert response.status_code == 200, response.get_json()
    review = response.get_json()["review"]
    assert review["disposition"] == "true_defect"
    assert (review["reviewer_class_name"], review["comment"]) == ("Env_Particle", "dust")
    assert review["reviewed_by"] == "anonymous" and review["reviewed_at"].endswith("Z")
    body = client.get(f"/images/{img_id}/regions").get_json()
    pi = next(c for c in body["classes"] if c["class_name"] == "PI_Particle")
    assert pi["total_regions"] == 5  # the model's class keeps its region
    assert pi["regions"][0]["review"]["reviewer_class_name"] == "Env_Particle"
    assert pi["regions"][1]["review"]["disposition"] == "unreviewed"
    with app.app_context():
        region = db.session.get(Region, region_id)
        assert db.session.get(DefectClass, region.class_unique_id).class_name == "PI_Particle"
        assert region.circularity == 0.750200171090617


def test_unchanged_values_are_not_logged(client, img_id):
    region_id = f"{img_id}_1_1"
    for _ in range(2):
        assert patch(client, img_id, region_id, {"disposition": "nuisance"}).status_code == 200
    log = client.get(f"/images/{img_id}/review-log").get_json()
    assert log["total"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"disposition": "maybe"}, "disposition"),
        ({}, "disposition"),
        (
            {"disposition": "false_call", "reviewer_class_name": "PI_Particle"},
            "reviewer_class_name",
        ),
        ({"disposition": "true_defect", "reviewer_class_name": "Dust"}, "reviewer_class_name"),
        ({"disposition": "true_defect", "comment": "x" * 1001}, "comment"),
        ({"disposition": "true_defect", "dispositon": "typo"}, "dispositon"),
    ],
)
def test_bad_dispositions_are_refused_and_change_nothing(client, img_id, body, field):
    response = patch(client, img_id, f"{img_id}_1_1", body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["code"] == "INVALID_PARAMETER" and field in answer["details"]["fields"]
    assert client.get(f"/images/{img_id}/review-log").get_json()["total"] == 0


def test_a_body_that_is_not_a_json_object_is_refused(client, img_id):
    response = client.patch(f"/images/{img_id}/regions/{img_id}_1_1", data="false_call")
    assert response.status_code == 400 and response.get_json()["code"] == "INVALID_BODY"


def test_unknown_image_and_region(client, img_id):
    missing = patch(client, "20200101_000000_NOPE00", "x_1_1", {"disposition": "nuisance"})
    assert missing.status_code == 404 and missing.get_json()["code"] == "IMAGE_NOT_FOUND"
    other = patch(client, img_id, f"{img_id}_9_1", {"disposition": "nuisance"})
    assert other.status_code == 404 and other.get_json()["code"] == "REGION_NOT_FOUND"
    assert client.get("/images/20200101_000000_NOPE00/review-log").status_code == 404


def test_several_at_once_and_the_reviewed_mark(client, img_id):
    ids = region_ids(client, img_id)
    response = client.post(
        f"/images/{img_id}/review",
        json={
            "regions": [
                {"region_unique_id": ids[0], "disposition": "false_call"},
                {"region_unique_id": ids[1], "disposition": "true_defect"},
            ],
            "reviewed": True,
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["changes"] == 3 and body["reviewed_by"] == "anonymous"
    assert body["progress"] == {"regions": 7, "reviewed": 2}
    assert client.get(f"/images/{img_id}").get_json()["reviewed_at"] == body["reviewed_at"]
    assert client.get("/images", query_string={"reviewed": "true"}).get_json()["total"] == 1
    assert client.get("/images", query_string={"reviewed": "false"}).get_json()["total"] == 0
    cleared = client.post(f"/images/{img_id}/review", json={"reviewed": False}).get_json()
    assert cleared["reviewed_at"] is None
    log = client.get(f"/images/{img_id}/review-log").get_json()["entries"]
    assert [e["region_unique_id"] for e in log] == [ids[0], ids[1], None, None]
    assert log[0]["old"]["disposition"] == "unreviewed"
    assert log[0]["new"] == {
        "disposition": "false_call",
        "reviewer_class_name": None,
        "comment": None,
    }
    assert (log[2]["old"]["reviewed"], log[2]["new"]["reviewed"]) == (False, True)
    assert (log[3]["old"]["reviewed"], log[3]["new"]["reviewed"]) == (True, False)
    assert all(e["changed_by"] == "anonymous" for e in log)


def test_several_at_once_is_all_or_nothing(app, client, img_id):
    ids = region_ids(client, img_id)
    response = client.post(
        f"/images/{img_id}/review",
        json={
            "regions": [
                {"region_unique_id": ids[0], "disposition": "false_call"},
                {"region_unique_id": "20200101_000000_OTHER0_1_1", "disposition": "nuisance"},
            ],
            "reviewed": True,
        },
    )
    assert response.status_code == 404 and response.get_json()["code"] == "REGION_NOT_FOUND"
    assert response.get_json()["details"]["missing"] == ["20200101_000000_OTHER0_1_1"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RegionReview)) == 0
        assert db.session.scalar(select(func.count()).select_from(ReviewLogEntry)) == 0
    assert client.get(f"/images/{img_id}").get_json()["reviewed_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"regions": []},
        {"regions": [{"region_unique_id": "a", "disposition": "nuisance"}] * 2},
        {"regions": "all", "reviewed": True},
    ],
)
def test_review_bodies_are_validated(client, img_id, body):
    response = client.post(f"/images/{img_id}/review", json=body)
    assert response.status_code == 400 and response.get_json()["code"] == "INVALID_PARAMETER"


def test_deleting_the_image_removes_its_reviews_and_log(app, client, img_id):
    assert patch(client, img_id, f"{img_id}_1_1", {"disposition": "nuisance"}).status_code == 200
    assert client.delete(f"/images/{img_id}").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RegionReview)) == 0
        assert db.session.scalar(select(func.count()).select_from(ReviewLogEntry)) == 0


def test_disposition_filter_in_region_search(client, img_id):
    ids = region_ids(client, img_id)
    patch(client, img_id, ids[0], {"disposition": "false_call"})
    patch(client, img_id, ids[1], {"disposition": "true_defect"})
    patch(client, img_id, ids[2], {"disposition": "true_defect"})
    patch(client, img_id, ids[2], {"disposition": "unreviewed"})  # taken back

    def found(disposition):
        body = client.get("/query/defects", query_string={"disposition": disposition}).get_json()
        return sorted(r["region_unique_id"] for r in body["regions"])

    assert found("false_call") == [ids[0]]
    assert found("true_defect") == [ids[1]]
    assert found("nuisance") == []
    assert found("unreviewed") == sorted(ids[2:])
    row = client.get("/query/defects", query_string={"disposition": "false_call"}).get_json()
    assert row["regions"][0]["review"]["disposition"] == "false_call"
    refused = client.get("/query/defects", query_string={"disposition": "bogus"})
    assert refused.status_code == 400


def test_statistics_show_the_rates_the_reviews_imply(client, model_service, sample_input):
    first = upload_one(client, sample_input, tool_id="AOI-3")
    second = upload_one(client, sample_input, tool_id="AOI-4")
    ids = region_ids(client, first)  # 5 PI_Particle, then PR_Peeling, Copper_Nodule
    verdicts = ["false_call", "false_call", "true_defect", "nuisance", "true_defect"]
    items = [{"region_unique_id": i, "disposition": d} for i, d in zip(ids, verdicts, strict=False)]
    items[4]["reviewer_class_name"] = "Env_Particle"
    assert client.post(f"/images/{first}/review", json={"regions": items}).status_code == 200
    patch(client, second, f"{second}_2_1", {"disposition": "true_defect"})

    review = client.get("/stats").get_json()["review"]
    assert review["totals"]["reviewed_regions"] == 6
    assert review["totals"]["false_call_rate"] == round(2 / 6, 4)
    assert review["totals"]["nuisance_rate"] == round(1 / 6, 4)
    by_class = {row["class_name"]: row for row in review["by_class"]}
    assert by_class["PI_Particle"]["false_call_rate"] == 0.4
    assert by_class["PR_Peeling"]["false_call_rate"] == 0.0
    by_tool = {row["tool_id"]: row["reviewed_regions"] for row in review["by_tool"]}
    assert by_tool == {"AOI-3": 5, "AOI-4": 1}
    assert [row["model"] for row in review["by_model"]] == ["nvidia/segformer-b2-aoi"]
    confusion = {(r["model_class"], r["reviewer_class"]): r["regions"] for r in review["confusion"]}
    assert confusion == {
        ("PI_Particle", "false_call"): 2,
        ("PI_Particle", "PI_Particle"): 2,
        ("PI_Particle", "Env_Particle"): 1,
        ("PR_Peeling", "PR_Peeling"): 1,
    }
    assert sum(day["reviewed_regions"] for day in review["daily"]) == 6
    groups = client.get("/stats", query_string={"group_by": "tool_id"}).get_json()["groups"]
    assert [(g["tool_id"], g["reviewed_regions"], g["false_call_rate"]) for g in groups] == [
        ("AOI-3", 5, 0.4),
        ("AOI-4", 1, 0.0),
    ]
    only_aoi4 = client.get("/stats", query_string={"tool_id": "AOI-4"}).get_json()["review"]
    assert only_aoi4["totals"]["reviewed_regions"] == 1


def test_empty_review_statistics(client):
    review = client.get("/stats").get_json()["review"]
    assert review["totals"]["reviewed_regions"] == 0
    assert review["totals"]["false_call_rate"] is None
    assert review["by_class"] == [] and review["confusion"] == []


# ---- named API keys ---------------------------------------------------------------------


def test_key_entries_may_carry_a_name():
    assert parse_key(f"qc-line1:{KEY1}") == ("qc-line1", KEY1.encode())
    name, key = parse_key(PLAIN)
    assert key == PLAIN.encode() and name.startswith("key-") and PLAIN not in name


def test_reviews_need_a_key_and_log_its_name(make_app, model_service, sample_input):
    app = make_app(API_KEYS=f"qc-line1:{KEY1}, {PLAIN}")
    client = app.test_client()
    headers = {"X-API-Key": KEY1}
    response = client.post(
        "/upload",
        data={"image": (io.BytesIO(sample_input), "wafer.jpeg")},
        content_type="multipart/form-data",
        headers=headers,
    )
    img_id = response.get_json()["img_unique_id"]
    region_id = f"{img_id}_1_1"
    refused = patch(client, img_id, region_id, {"disposition": "nuisance"})
    assert refused.status_code == 401
    assert (
        patch(client, img_id, region_id, {"disposition": "nuisance"}, headers=headers).status_code
        == 200
    )
    plain = {"Authorization": f"Bearer {PLAIN}"}
    assert (
        patch(client, img_id, region_id, {"disposition": "false_call"}, headers=plain).status_code
        == 200
    )
    log = client.get(f"/images/{img_id}/review-log", headers=headers).get_json()["entries"]
    assert [e["changed_by"] for e in log] == ["qc-line1", parse_key(PLAIN)[0]]
    assert log[1]["old"]["disposition"] == "nuisance"
    assert client.get("/images", headers={"X-API-Key": "qc-line1"}).status_code == 401
