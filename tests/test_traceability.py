"""Traceability metadata (issue #16): lot / wafer / tool / recipe / layer / operator
given with single and batch uploads, stored per image, returned and filterable."""

import csv
import io
import json
import zipfile

import pytest
from conftest import ON_MYSQL
from helpers import stored_files

from aoi_flask.extensions import db
from aoi_flask.models import TRACE_FIELDS, Batch, Image

LOT_A = {
    "lot_id": "LOT-2026.03_A",
    "wafer_id": "W07",
    "tool_id": "AOI-3",
    "recipe": "M1_POST_CMP",
    "layer": "M1",
    "operator": "Chen Wei",
}


def post_upload(client, data, **fields):
    return client.post(
        "/upload",
        data={"image": (io.BytesIO(data), "wafer.jpeg"), **fields},
        content_type="multipart/form-data",
    )


def post_batch(client, files, **fields):
    return client.post(
        "/upload/batch",
        data={"images": [(io.BytesIO(data), name) for data, name in files], **fields},
        content_type="multipart/form-data",
    )


def test_single_upload_stores_and_returns_every_field(app, client, model_service, sample_input):
    response = post_upload(client, sample_input, **LOT_A)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert {name: body[name] for name in TRACE_FIELDS} == LOT_A
    img_id = body["img_unique_id"]
    with app.app_context():
        image = db.session.get(Image, img_id)
        assert {name: getattr(image, name) for name in TRACE_FIELDS} == LOT_A
    detail = client.get(f"/images/{img_id}").get_json()
    assert {name: detail[name] for name in TRACE_FIELDS} == LOT_A
    listed = client.get("/images").get_json()["images"][0]
    assert {name: listed[name] for name in TRACE_FIELDS} == LOT_A
    assert listed["reviewed_at"] is None


def test_fields_are_optional_and_blank_means_absent(client, model_service, sample_input):
    body = post_upload(client, sample_input, lot_id="  ", tool_id=" AOI-1 ").get_json()
    assert body["lot_id"] is None and body["wafer_id"] is None
    assert body["tool_id"] == "AOI-1"  # surrounding spaces dropped


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("lot_id", "L" * 65, "at most 64"),
        ("wafer_id", "W/07", "may hold only"),
        ("tool_id", "AOI 3", "may hold only"),  # spaces only for operator
        ("recipe", "r;DROP TABLE", "may hold only"),
        ("operator", "Chen<b>", "may hold only"),
        ("layer", "M1\tB", "may hold only"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_stored(
    client, model_service, sample_input, storage_root, field, value, fragment
):
    response = post_upload(client, sample_input, **{field: value})
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "INVALID_PARAMETER"
    assert field in body["details"]["fields"] and fragment in body["error"]
    assert not model_service.called  # refused before the model was asked
    assert [f for f in stored_files(storage_root) if f.startswith("uploads/")] == []
    assert client.get("/images").get_json()["total"] == 0


def test_batch_fields_apply_to_every_file(app, client, model_service, sample_input):
    files = [(sample_input, "a.jpeg"), (sample_input, "b.jpeg"), (b"not an image", "c.txt")]
    response = post_batch(client, files, lot_id="LOT-B", wafer_id="W01", tool_id="AOI-7")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    done = [row for row in body["results"] if row["success"]]
    assert len(done) == 2
    assert all(
        (r["lot_id"], r["wafer_id"], r["tool_id"]) == ("LOT-B", "W01", "AOI-7") for r in done
    )
    batch = client.get(f"/batches/{body['batch_id']}").get_json()
    assert (batch["lot_id"], batch["recipe"]) == ("LOT-B", None)
    with app.app_context():
        assert db.session.get(Batch, body["batch_id"]).tool_id == "AOI-7"


def test_async_batch_keeps_the_fields_for_its_workers(app, client, model_service, sample_input):
    response = post_batch(client, [(sample_input, "a.jpeg")], recipe="R-9", **{"async": "true"})
    assert response.status_code == 202
    app.extensions["aoi"].batches.wait_idle(timeout=30)
    images = client.get("/images", query_string={"recipe": "R-9"}).get_json()
    assert (
        images["total"] == 1 and images["images"][0]["batch_id"] == response.get_json()["batch_id"]
    )


def test_a_bad_batch_field_refuses_the_whole_batch(client, model_service, sample_input):
    response = post_batch(client, [(sample_input, "a.jpeg")], lot_id="bad lot")
    assert response.status_code == 400 and response.get_json()["code"] == "INVALID_PARAMETER"
    assert client.get("/batches").get_json()["total"] == 0


@pytest.fixture
def two_lots(client, model_service, sample_input):
    """Three images: two of lot A (tool AOI-3, wafers W07/W08), one of lot B (AOI-4)."""
    ids = []
    for values in (
        LOT_A,
        {**LOT_A, "wafer_id": "W08"},
        {"lot_id": "LOT-B", "tool_id": "AOI-4", "recipe": "M2"},
    ):
        ids.append(post_upload(client, sample_input, **values).get_json()["img_unique_id"])
    return ids


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"lot_id": LOT_A["lot_id"]}, [0, 1]),
        ({"wafer_id": "W08"}, [1]),
        ({"tool_id": "AOI-4"}, [2]),
        ({"recipe": "M1_POST_CMP"}, [0, 1]),
        ({"layer": "M1"}, [0, 1]),
        ({"operator": "Chen Wei"}, [0, 1]),
        ({"lot_id": LOT_A["lot_id"], "wafer_id": "W07"}, [0]),
        ({"lot_id": "LOT-B", "wafer_id": "W07"}, []),
        ({"lot_id": "LOT-B", "class_name": "PR_Peeling"}, [2]),
    ],
)
def test_history_filters_by_each_field(client, two_lots, filters, expected):
    body = client.get("/images", query_string=filters).get_json()
    assert body["total"] == len(expected)
    assert sorted(i["img_unique_id"] for i in body["images"]) == sorted(
        two_lots[i] for i in expected
    )


def test_filters_are_validated_like_the_upload(client):
    response = client.get("/images", query_string={"tool_id": "x" * 65})
    assert response.status_code == 400 and "tool_id" in response.get_json()["details"]["fields"]


def test_region_search_and_csv_carry_and_filter_the_fields(client, two_lots):
    body = client.get("/query/defects", query_string={"tool_id": "AOI-4"}).get_json()
    assert body["total"] == 7 and {r["img_unique_id"] for r in body["regions"]} == {two_lots[2]}
    row = body["regions"][0]
    assert (row["lot_id"], row["tool_id"], row["wafer_id"]) == ("LOT-B", "AOI-4", None)
    assert row["review"]["disposition"] == "unreviewed"
    assert client.get("/query/defects", query_string={"lot_id": "none"}).get_json()["total"] == 0
    response = client.get("/query/defects", query_string={"format": "csv", "wafer_id": "W07"})
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 7 and {r["img_unique_id"] for r in rows} == {two_lots[0]}
    assert rows[0]["lot_id"] == LOT_A["lot_id"] and rows[0]["operator"] == "Chen Wei"
    assert rows[0]["disposition"] == "unreviewed"


def test_stats_filter_and_group_by(client, two_lots):
    body = client.get("/stats", query_string={"lot_id": LOT_A["lot_id"]}).get_json()
    assert body["totals"]["images"] == 2 and body["totals"]["regions"] == 14
    assert body["filters"] == {"lot_id": LOT_A["lot_id"]}
    pi = next(c for c in body["classes"] if c["class_name"] == "PI_Particle")
    assert pi["regions"] == 10 and pi["images"] == 2
    grouped = client.get("/stats", query_string={"group_by": "tool_id"}).get_json()
    assert [(g["tool_id"], g["images"], g["regions"]) for g in grouped["groups"]] == [
        ("AOI-3", 2, 14),
        ("AOI-4", 1, 7),
    ]
    by_lot = client.get("/stats", query_string={"group_by": "lot_id", "tool_id": "AOI-4"})
    assert [g["lot_id"] for g in by_lot.get_json()["groups"]] == ["LOT-B"]
    refused = client.get("/stats", query_string={"group_by": "colour"})
    assert refused.status_code == 400 and refused.get_json()["code"] == "INVALID_PARAMETER"


def test_batch_zip_manifests_carry_the_fields(client, model_service, sample_input):
    body = post_batch(client, [(sample_input, "a.jpeg")], lot_id="LOT-Z", tool_id="AOI-9")
    batch_id = body.get_json()["batch_id"]
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/download/batch/{batch_id}").data))
    summary = json.loads(archive.read("batch_summary.json"))
    assert (summary["lot_id"], summary["tool_id"]) == ("LOT-Z", "AOI-9")
    rows = list(csv.DictReader(io.StringIO(archive.read("regions.csv").decode())))
    assert len(rows) == 7 and {r["lot_id"] for r in rows} == {"LOT-Z"}


# ---- indexes (EXPLAIN on MariaDB; the seeding of tests/test_explain.py) -----------------


def seed_traced(count):
    """test_explain's seeded images, spread over 8 tools and lots of about 10 images."""
    from sqlalchemy import text
    from test_explain import seed

    seed(count)
    db.session.execute(
        text(
            "UPDATE images SET tool_id = CONCAT('AOI-', 1 + MOD(LENGTH(img_unique_id) "
            "+ CAST(SUBSTR(img_unique_id, 17) AS UNSIGNED), 8)), "
            "lot_id = CONCAT('LOT', CAST(SUBSTR(img_unique_id, 17) AS UNSIGNED) DIV 10)"
        )
    )
    db.session.commit()
    db.session.execute(text("ANALYZE TABLE images, classes, regions"))


@pytest.mark.skipif(not ON_MYSQL, reason="EXPLAIN plans are checked on MariaDB/MySQL")
def test_traceability_filters_use_their_indexes(app):
    from test_explain import EXPLAIN_IMAGES, assert_indexed

    from aoi_flask.services import queries
    from aoi_flask.services.queries import Window

    with app.app_context():
        seed_traced(EXPLAIN_IMAGES)
        for trace, key in (
            ({"lot_id": "LOT7"}, "ix_images_lot_id_time"),
            ({"tool_id": "AOI-3"}, "ix_images_tool_id_time"),
        ):
            accesses = assert_indexed(
                lambda trace=trace: queries.list_images(
                    Window(),
                    class_name=None,
                    batch_id=None,
                    sort="newest",
                    page=1,
                    limit=20,
                    trace=trace,
                ),
                {"images": {key}},
            )
            assert ("images", key) in {(t, k) for t, _, k in accesses}
        assert_indexed(
            lambda: queries.search_regions(
                Window(), {"lot_id": "LOT7"}, sort="newest", page=1, limit=20
            ),
            {"images": {"ix_images_lot_id_time"}},
        )
        assert_indexed(
            lambda: queries.statistics(Window(), {"lot_id": "LOT7"}),
            {"images": {"ix_images_lot_id_time"}},
        )
