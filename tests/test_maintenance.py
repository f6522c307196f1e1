"""`flask aoi fsck` (check/repair), `flask aoi cleanup` (retention, 410 Gone), and the
reliability pieces around them: settling items after a database failure, resuming
after a restart, a commit whose acknowledgement was lost."""

import json
from datetime import timedelta

import pytest
from conftest import MODEL_URL
from helpers import image_bytes, stored_files, upload, upload_batch
from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError

from aoi_flask.extensions import db
from aoi_flask.models import BatchItem, DefectClass, Image, Region
from aoi_flask.services import batches as batch_service
from aoi_flask.services import maintenance
from aoi_flask.services.storage import utc_now


def storage_of(app):
    return app.extensions["aoi"].storage


def check(app, **kwargs):
    with app.app_context():
        return maintenance.check(storage_of(app), **kwargs)


def repair(app, report):
    with app.app_context():
        return maintenance.repair(storage_of(app), report)


def stored_image(client, sample_input, name="wafer.jpg"):
    response = upload(client, sample_input, name=name)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["img_unique_id"]


def image_row(app, img_id):
    with app.app_context():
        image = db.session.get(Image, img_id)
        db.session.expunge(image)
        return image


def kinds(report):
    return report.by_kind()


# ---- check -----------------------------------------------------------------------------


def test_a_clean_store_has_no_problems(app, client, model_service, sample_input):
    stored_image(client, sample_input)
    upload_batch(client, [(sample_input, "a.jpg"), (b"not an image", "b.jpg")])
    report = check(app)
    assert report.ok, report.to_dict()
    assert report.scanned == {"images": 2, "classes": 8, "batch_items": 2, "files": 12}
    assert report.summary() == "no problems found"


def test_orphans_and_temporary_files_are_found_and_removed(
    app, client, model_service, sample_input, storage_root
):
    img_id = stored_image(client, sample_input)
    image = image_row(app, img_id)
    result_dir = image.result_image_1_path.rsplit("/", 1)[0]
    day = result_dir.split("/")[1]
    (storage_root / "uploads" / day / "stray_input.jpg").write_bytes(b"x")
    (storage_root / result_dir / ".tmp-abc123.png").write_bytes(b"partial")
    (storage_root / result_dir / "extra.txt").write_bytes(b"?")
    (storage_root / "results" / day / "20200101_000000_ABCDEF").mkdir()
    (storage_root / "results" / day / "20200101_000000_GHIJKL").mkdir()
    (storage_root / "results" / day / "20200101_000000_GHIJKL" / "mask.png").write_bytes(b"m")
    report = check(app)
    assert kinds(report) == {"orphan_file": 2, "temp_file": 1, "orphan_dir": 2}
    assert all(problem.repairable for problem in report.problems)
    # Young files are left alone while the agent may still be writing them.
    assert check(app, min_age=3600).ok
    repairs = repair(app, report)
    assert repairs.actions["removed orphan_dir"] == 2
    assert check(app).ok
    assert len(stored_files(storage_root)) == 6


def test_missing_files_are_marked_and_the_mark_cleared_when_they_return(
    app, client, model_service, sample_input, storage_root
):
    img_id = stored_image(client, sample_input)
    overlay = storage_root / image_row(app, img_id).result_image_3_path
    saved = overlay.read_bytes()
    overlay.unlink()
    report = check(app)
    assert kinds(report) == {"missing_file": 1}
    assert report.problems[0].subject == img_id
    repair(app, report)
    assert check(app).ok
    detail = client.get(f"/images/{img_id}").get_json()
    assert detail["files_missing_at"] is not None and detail["purged_at"] is None
    assert client.get(f"/download/image/{img_id}/overlay").status_code == 404
    overlay.write_bytes(saved)  # restored from backup
    report = check(app)
    assert kinds(report) == {"stale_missing_mark": 1}
    repair(app, report)
    assert check(app).ok
    assert client.get(f"/images/{img_id}").get_json()["files_missing_at"] is None


def test_row_count_mismatches_are_reported_not_repaired(app, client, model_service, sample_input):
    first = stored_image(client, sample_input, "a.jpg")
    second = stored_image(client, sample_input, "b.jpg")
    with app.app_context():
        db.session.execute(delete(DefectClass).where(DefectClass.class_unique_id == f"{first}_4"))
        region = db.session.scalars(
            select(Region).where(Region.img_unique_id == second).limit(1)
        ).one()
        db.session.delete(region)
        db.session.execute(
            update(Image).where(Image.img_unique_id == first).values(total_defects=99)
        )
        db.session.commit()
    report = check(app)
    # total_defects is compared with the classes' total_regions (which still say 7 for the
    # second image); the region rows are compared with each class's total_regions.
    assert kinds(report) == {"class_rows": 1, "region_count": 1, "total_defects": 1}
    assert not any(problem.repairable for problem in report.problems)
    repairs = repair(app, report)
    assert len(repairs.skipped) == 3
    assert kinds(check(app)) == kinds(report)


def test_a_done_item_without_its_image_row_becomes_retryable(
    app, client, model_service, sample_input
):
    body = upload_batch(client, [(sample_input, "a.jpg"), (sample_input, "b.jpg")]).get_json()
    gone = body["results"][0]["img_unique_id"]
    with app.app_context():
        db.session.execute(delete(Image).where(Image.img_unique_id == gone))
        db.session.commit()
    report = check(app)
    # Its result files lost their row: orphans; the item says done without a row.
    assert kinds(report) == {"done_without_image": 1, "orphan_file": 5}
    repairs = repair(app, report)
    assert repairs.actions["marked done item failed (retryable)"] == 1
    assert check(app).ok
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert status["status"] == "partial"
    assert status["files"][0]["code"] == maintenance.RESULT_MISSING
    assert status["files"][0]["retryable"] is True
    assert client.post(f"/batches/{body['batch_id']}/retry").status_code == 202
    app.extensions["aoi"].batches.wait_idle(30)
    assert client.get(f"/batches/{body['batch_id']}").get_json()["status"] == "done"
    assert check(app).ok


def test_a_failed_item_whose_input_is_gone_is_recorded_as_lost(
    app, client, requests_mock, sample_input, storage_root
):
    requests_mock.post(f"{MODEL_URL}/upload", status_code=500, json={"success": False})
    body = upload_batch(client, [(sample_input, "a.jpg")]).get_json()
    assert body["failed"] == 1
    with app.app_context():
        item = db.session.scalars(select(BatchItem)).one()
        (storage_root / item.input_path).unlink()
    report = check(app)
    assert kinds(report) == {"failed_input_missing": 1}
    repair(app, report)
    report = check(app)
    assert report.ok and report.notes["failed_items_input_lost"] == 1
    status = client.get(f"/batches/{body['batch_id']}").get_json()
    assert status["files"][0]["code"] == "INPUT_MISSING"
    assert status["files"][0]["retryable"] is False


def test_unfinished_items_without_input_are_found(app, client, model_service, sample_input):
    body = upload_batch(client, [(sample_input, "a.jpg")]).get_json()
    with app.app_context():
        db.session.execute(update(BatchItem).values(state="queued"))
        db.session.execute(delete(Image))
        db.session.commit()
        item = db.session.scalars(select(BatchItem)).one()
        storage_of(app).remove(item.input_path)
    report = check(app)
    assert kinds(report) == {"unfinished_input_missing": 1, "orphan_file": 5}
    repair(app, report)
    assert check(app).ok
    assert client.get(f"/batches/{body['batch_id']}").get_json()["status"] == "failed"


# ---- the command line --------------------------------------------------------------------


def test_fsck_command_exit_status_json_and_repair(
    app, client, model_service, sample_input, storage_root
):
    stored_image(client, sample_input)
    runner = app.test_cli_runner()
    clean = runner.invoke(args=["aoi", "fsck"])
    assert clean.exit_code == 0, clean.output
    assert "problems: none" in clean.output
    (storage_root / "uploads" / "orphan.jpg").write_bytes(b"x")
    found = runner.invoke(args=["aoi", "fsck", "--json"])
    assert found.exit_code == 1
    body = json.loads(found.output)
    assert body["before"]["by_kind"] == {"orphan_file": 1}
    assert body["before"]["problems"][0]["subject"] == "uploads/orphan.jpg"
    young = runner.invoke(args=["aoi", "fsck", "--min-age", "600"])
    assert young.exit_code == 0
    fixed = runner.invoke(args=["aoi", "fsck", "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert "orphan_file: uploads/orphan.jpg" in fixed.output
    assert "after repair: no problems" in fixed.output
    assert not (storage_root / "uploads" / "orphan.jpg").exists()


def test_fsck_repair_exits_non_zero_when_problems_remain(app, client, model_service, sample_input):
    img_id = stored_image(client, sample_input)
    with app.app_context():
        db.session.execute(delete(Region).where(Region.img_unique_id == img_id))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["aoi", "fsck", "--repair"])
    assert result.exit_code == 1
    assert "(not repairable)" in result.output


# ---- retention ------------------------------------------------------------------------------


def age(app, img_id, days):
    with app.app_context():
        db.session.execute(
            update(Image)
            .where(Image.img_unique_id == img_id)
            .values(timestamp=utc_now() - timedelta(days=days))
        )
        db.session.commit()


def test_cleanup_purges_old_files_and_keeps_the_rows(
    app, client, model_service, sample_input, storage_root
):
    old = stored_image(client, sample_input, "old.jpg")
    new = stored_image(client, sample_input, "new.jpg")
    age(app, old, 40)
    before = client.get("/stats").get_json()["storage"]["bytes_used"]
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["aoi", "cleanup", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would purge 1 image(s)" in dry.output and "6 file(s)" in dry.output
    assert len(stored_files(storage_root)) == 12
    assert client.get(f"/images/{old}").get_json()["purged_at"] is None

    done = runner.invoke(args=["aoi", "cleanup", "--older-than", "30"])
    assert done.exit_code == 0, done.output
    assert "purged 1 image(s)" in done.output
    assert all(new in path for path in stored_files(storage_root))
    assert len(stored_files(storage_root)) == 6

    detail = client.get(f"/images/{old}")
    assert detail.status_code == 200 and detail.get_json()["purged_at"].endswith("Z")
    assert client.get(f"/images/{old}/regions").get_json()["total_regions"] == 7
    assert len(client.get(f"/images/{old}/classes").get_json()["classes"]) == 4
    for path in (
        f"/download/image/{old}/input",
        f"/download/image/{old}/overlay",
        f"/download/image/{old}/thumbnail",
        f"/download/json/{old}",
    ):
        response = client.get(path)
        assert response.status_code == 410, path
        body = response.get_json()
        assert body["code"] == "IMAGES_PURGED"
        assert body["error"].startswith("images purged by retention")
    assert client.get(f"/download/image/{new}/input").status_code == 200
    assert client.get("/stats").get_json()["storage"]["bytes_used"] < before
    assert check(app).ok
    again = runner.invoke(args=["aoi", "cleanup", "--older-than", "30"])
    assert "purged 0 image(s)" in again.output


def test_cleanup_interrupted_between_rows_and_files_is_finished_by_fsck(
    app, client, model_service, sample_input
):
    img_id = stored_image(client, sample_input)
    with app.app_context():  # the rows were marked, then the job died before deleting
        db.session.execute(
            update(Image).where(Image.img_unique_id == img_id).values(purged_at=utc_now())
        )
        db.session.commit()
    report = check(app)
    assert kinds(report) == {"purged_file_present": 1}
    repair(app, report)
    assert check(app).ok
    assert client.get(f"/download/image/{img_id}/mask").status_code == 410


def test_cleanup_keeps_failed_batch_inputs(app, client, requests_mock, sample_input, storage_root):
    requests_mock.post(f"{MODEL_URL}/upload", status_code=500, json={"success": False})
    upload_batch(client, [(sample_input, "a.jpg")])
    result = app.test_cli_runner().invoke(args=["aoi", "cleanup", "--older-than", "0"])
    assert "purged 0 image(s)" in result.output
    assert len(stored_files(storage_root)) == 1  # still retryable


# ---- settling, resuming, lost acknowledgements ----------------------------------------------


def one_item(app):
    return db.session.scalars(select(BatchItem)).one()


def test_an_item_is_claimed_once(app, client, requests_mock, sample_input):
    requests_mock.post(f"{MODEL_URL}/upload", status_code=500, json={"success": False})
    upload_batch(client, [(sample_input, "a.jpg")])
    with app.app_context():
        item = one_item(app)
        item.state = "processing"  # another worker has it
        db.session.commit()
        calls = requests_mock.call_count
        assert batch_service.run_item(app.extensions["aoi"].results, item.id) == "processing"
        assert requests_mock.call_count == calls


@pytest.mark.parametrize("has_image", [True, False])
def test_settling_an_item_whose_worker_lost_the_database(
    app, client, model_service, sample_input, has_image, storage_root
):
    upload_batch(client, [(sample_input, "a.jpg")])
    results = app.extensions["aoi"].results
    with app.app_context():
        item = one_item(app)
        item.state = "processing"
        if not has_image:
            db.session.execute(delete(Image))
        db.session.commit()
        state = batch_service.settle_item(results, item.id)
    assert state == ("done" if has_image else "failed")
    if not has_image:
        with app.app_context():
            assert one_item(app).error_code == "DATABASE_UNAVAILABLE"
            files = list((storage_root / one_item(app).result_dir).iterdir())
        assert files == []  # partial results cleared, the folder stays reserved


def test_settling_runs_an_item_that_never_started(app, client, model_service, sample_input):
    upload_batch(client, [(sample_input, "a.jpg")])
    with app.app_context():
        item = one_item(app)
        item.state = "queued"
        db.session.execute(delete(Image))
        db.session.commit()
        storage_of(app).remove(*[f"{item.result_dir}/{n}" for n in maintenance.RESULT_FILES])
        assert batch_service.settle_item(app.extensions["aoi"].results, item.id) == "done"
    assert check(app).ok


def test_a_worker_that_loses_the_database_settles_the_item(
    app, client, model_service, sample_input, monkeypatch
):
    body = upload_batch(client, [(sample_input, "a.jpg")], **{"async": "true"})
    app.extensions["aoi"].batches.wait_idle(30)
    with app.app_context():
        item = one_item(app)
        item.state = "queued"
        db.session.execute(delete(Image))
        db.session.commit()
        item_id = item.id
    real_run_item = batch_service.run_item
    failures = []

    def run_item_once_broken(results, item_id):
        if not failures:
            failures.append(1)
            raise OperationalError("UPDATE", {}, Exception("Lost connection"))
        return real_run_item(results, item_id)

    monkeypatch.setattr(batch_service, "run_item", run_item_once_broken)
    app.extensions["aoi"].batches.submit([item_id])
    app.extensions["aoi"].batches.wait_idle(30)
    assert client.get(f"/batches/{body.get_json()['batch_id']}").get_json()["status"] == "done"


def test_resume_unfinished_requeues_clears_and_resubmits(
    app, client, model_service, sample_input, storage_root
):
    body = upload_batch(client, [(sample_input, "a.jpg")]).get_json()
    with app.app_context():
        item = one_item(app)
        item.state = "processing"
        db.session.execute(delete(Image))
        db.session.commit()
        leftover = storage_root / item.result_dir / ".tmp-killed.png"
    leftover.write_bytes(b"half")
    resumed = batch_service.resume_unfinished(app)
    assert len(resumed) == 1
    app.extensions["aoi"].batches.wait_idle(30)
    assert client.get(f"/batches/{body['batch_id']}").get_json()["status"] == "done"
    assert not leftover.exists()
    assert check(app).ok


def test_resume_unfinished_tolerates_an_unmigrated_database(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert batch_service.resume_unfinished(app) == []


def test_a_commit_whose_acknowledgement_was_lost_keeps_the_result(
    app, client, model_service, sample_input, monkeypatch
):
    with app.app_context():
        real = db.session.commit

        def commit_then_lose_the_answer():
            real()
            monkeypatch.undo()
            raise OperationalError("COMMIT", {}, Exception("Lost connection during query"))

        monkeypatch.setattr(db.session, "commit", commit_then_lose_the_answer)
        response = upload(client, sample_input)
    assert response.status_code == 201, response.get_json()
    img_id = response.get_json()["img_unique_id"]
    assert client.get(f"/download/image/{img_id}/overlay").status_code == 200
    assert check(app).ok


def test_a_lost_database_connection_answers_503(app, client, monkeypatch):
    from aoi_flask.services import queries

    def broken(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("Lost connection to MySQL server"))

    monkeypatch.setattr(queries, "list_images", broken)
    response = client.get("/images")
    assert response.status_code == 503
    assert response.get_json()["code"] == "DATABASE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "10"


def test_a_results_folder_that_cannot_be_created_answers_507(
    app, client, model_service, sample_input, monkeypatch, storage_root
):
    def broken(moment):
        raise NotADirectoryError(20, "Not a directory")

    monkeypatch.setattr(storage_of(app), "reserve_result_dir", broken)
    response = upload(client, image_bytes())
    assert response.status_code == 507
    assert response.get_json()["code"] == "STORAGE_ERROR"
    assert stored_files(storage_root) == []


def test_a_connection_that_dies_before_teardown_does_not_spoil_the_answer(app, client, monkeypatch):
    from sqlalchemy.orm import Session

    real_close = Session.close
    broken = []

    def close_on_a_killed_connection(self):
        monkeypatch.setattr(Session, "close", real_close)
        broken.append(self)
        raise OperationalError("ROLLBACK", {}, Exception("Lost connection during query"))

    monkeypatch.setattr(Session, "close", close_on_a_killed_connection)
    response = client.get("/images")
    assert response.status_code == 200 and broken
    assert client.get("/images").status_code == 200


def test_dotfiles_are_never_orphans_and_repair_keeps_them(
    app, client, model_service, sample_input, storage_root
):
    stored_image(client, sample_input)
    keep = [storage_root / "uploads" / ".gitkeep", storage_root / "results" / ".gitkeep"]
    for path in keep:
        path.write_bytes(b"")
    runner = app.test_cli_runner()
    clean = runner.invoke(args=["aoi", "fsck"])
    assert clean.exit_code == 0, clean.output
    assert ".gitkeep" not in clean.output
    runner.invoke(args=["aoi", "fsck", "--repair"])
    assert all(path.exists() for path in keep)
