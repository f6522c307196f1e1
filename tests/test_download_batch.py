"""GET /download/batch/{id}: a streamed ZIP with everything of the batch."""

import csv
import io
import json
import zipfile

from helpers import image_bytes, upload_batch


def test_zip_holds_every_image_folder_summary_and_regions(
    client, model_service, sample_input, sample_images, sample_analysis_bytes
):
    files = [(sample_input, "wafer-1.jpeg"), (b"junk", "junk.png"), (sample_input, "晶圓 2.jpeg")]
    batch = upload_batch(client, files).get_json()
    response = client.get(f"/download/batch/{batch['batch_id']}")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.is_streamed
    assert f"batch_{batch['batch_id']}.zip" in response.headers["Content-Disposition"]
    data = response.get_data()
    assert int(response.headers["Content-Length"]) == len(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = set(archive.namelist())
    ids = [r["img_unique_id"] for r in batch["results"] if r["success"]]
    folders = {f"{ids[0]}_wafer-1", f"{ids[1]}_晶圓_2"}
    for folder in folders:
        for name in ("input.jpg", "combined.png", "mask.png", "overlay.png", "analysis.json"):
            assert f"{folder}/{name}" in names
    assert names == {
        f"{f}/{n}"
        for f in folders
        for n in ("input.jpg", "combined.png", "mask.png", "overlay.png", "analysis.json")
    } | {"batch_summary.json", "regions.csv"}
    folder = f"{ids[0]}_wafer-1"
    assert archive.read(f"{folder}/input.jpg") == sample_input
    assert archive.read(f"{folder}/overlay.png") == sample_images["overlay"]
    assert archive.read(f"{folder}/analysis.json") == sample_analysis_bytes
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())

    summary = json.loads(archive.read("batch_summary.json"))
    assert summary["batch_id"] == batch["batch_id"]
    assert (summary["processed"], summary["failed"]) == (2, 1)
    assert summary["files"][1]["code"] == "UNSUPPORTED_FORMAT"

    rows = list(csv.DictReader(io.StringIO(archive.read("regions.csv").decode())))
    assert len(rows) == 14
    assert {r["img_unique_id"] for r in rows} == set(ids)
    first = next(r for r in rows if r["class_name"] == "PI_Particle" and r["region_id"] == "1")
    assert float(first["centroid_x"]) == 1655.904761904762


def test_zip_of_a_batch_with_no_results_still_has_summary(client, model_service):
    batch = upload_batch(client, [(b"junk", "x.png")]).get_json()
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/download/batch/{batch['batch_id']}").data))
    assert set(archive.namelist()) == {"batch_summary.json", "regions.csv"}
    assert archive.read("regions.csv").decode().startswith("region_unique_id,")


def test_zip_of_unknown_batch_is_404(client):
    response = client.get("/download/batch/nope")
    assert response.status_code == 404
    assert response.get_json()["code"] == "BATCH_NOT_FOUND"


def test_zip_is_streamed_in_pieces(client, model_service):
    batch = upload_batch(client, [(image_bytes(size=(300, 300)), f"{i}.png") for i in range(3)])
    response = client.get(f"/download/batch/{batch.get_json()['batch_id']}", buffered=False)
    chunks = list(response.response)
    assert len(chunks) > 3
    zipfile.ZipFile(io.BytesIO(b"".join(chunks))).testzip()
