"""Distributed mode in one process: tasks on real Redis (own prefix), claims,
takeovers, start-up resume and the cluster-wide model cap. The multi-process
proof (web and worker processes, kill -9) is tests/test_scaleout.py."""

import threading
import time
from datetime import timedelta

import pytest
from celery.exceptions import Reject, Retry
from conftest import MODEL_URL, REDIS_URL
from helpers import upload, upload_batch
from sqlalchemy import select, update

from aoi_flask.extensions import db
from aoi_flask.models import BatchItem
from aoi_flask.services import batches as batch_service
from aoi_flask.services.slots import ClusterSemaphore
from aoi_flask.services.storage import utc_now
from aoi_flask.tasks import QUEUE, TASK_NAME


@pytest.fixture
def cluster_app(make_app, redis_prefix):
    def factory(**overrides):
        return make_app(BROKER_URL=REDIS_URL, REDIS_PREFIX=redis_prefix, **overrides)

    return factory


def model_calls(requests_mock):
    return sum(1 for r in requests_mock.request_history if r.url == f"{MODEL_URL}/upload")


def run_task(app, item_id, **kwargs):
    """What a worker does with one message."""
    task = app.extensions["celery"].tasks[TASK_NAME]
    with app.app_context():
        return task.run(item_id, **kwargs)


def item_ids(app):
    with app.app_context():
        return db.session.scalars(select(BatchItem.id).order_by(BatchItem.id)).all()


def queue_length(app):
    svc = app.extensions["aoi"]
    return svc.batches.broker.llen(app.config["REDIS_PREFIX"] + QUEUE)


def age_claim(app, item_id, seconds):
    with app.app_context():
        db.session.execute(
            update(BatchItem)
            .where(BatchItem.id == item_id)
            .values(started_at=utc_now() - timedelta(seconds=seconds))
        )
        db.session.commit()


def test_async_batch_is_enqueued_and_each_item_runs_once(cluster_app, model_service, sample_input):
    app = cluster_app()
    client = app.test_client()
    body = upload_batch(
        client, [(sample_input, "a.jpg"), (sample_input, "b.jpg")], **{"async": "true"}
    )
    assert body.status_code == 202
    assert queue_length(app) == 2
    assert model_calls(model_service) == 0  # the web process only enqueues
    progress = client.get(f"/batches/{body.get_json()['batch_id']}").get_json()
    assert progress["status"] == "queued"
    assert progress["cluster"]["mode"] == "distributed"
    assert progress["cluster"]["queue_depth"] == 2
    ids = item_ids(app)
    assert [run_task(app, i) for i in ids] == ["done", "done"]
    assert [run_task(app, i) for i in ids] == [None, None]  # a second delivery is a no-op
    assert model_calls(model_service) == 2
    progress = client.get(f"/batches/{body.get_json()['batch_id']}").get_json()
    assert progress["status"] == "done"
    assert [f["attempts"] for f in progress["files"]] == [1, 1]


def test_a_stale_claim_is_taken_over_and_the_old_owner_cannot_finish(
    cluster_app, model_service, sample_input
):
    app = cluster_app()
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    (item_id,) = item_ids(app)
    with app.app_context():
        assert batch_service.claim_item(item_id, lease=60) == 1
        assert batch_service.claim_item(item_id, lease=60) is None  # fresh: not claimable
    age_claim(app, item_id, 120)
    with app.app_context():
        assert batch_service.claim_item(item_id, lease=60) == 2  # its worker died
        # The first owner wakes up: its outcome is not written.
        assert batch_service.finish_item(item_id, 1, "failed", "X", "late") == "processing"
        results = app.extensions["aoi"].results
        assert batch_service.work_item(results, item_id, 2) == "done"


def test_a_taken_over_item_whose_image_is_stored_is_not_redone(
    cluster_app, model_service, sample_input
):
    app = cluster_app()
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    (item_id,) = item_ids(app)
    assert run_task(app, item_id) == "done"
    with app.app_context():  # as if the worker died after storing, before marking it
        db.session.execute(update(BatchItem).values(state="processing", finished_at=None))
        db.session.commit()
    age_claim(app, item_id, 10_000)
    assert run_task(app, item_id) == "done"
    assert model_calls(model_service) == 1
    with app.app_context():
        assert db.session.get(BatchItem, item_id).attempts == 2


def test_processes_starting_at_once_resume_each_orphan_once(
    cluster_app, model_service, sample_input
):
    apps = [cluster_app(), cluster_app()]
    files = [(sample_input, f"{n}.jpg") for n in range(3)]
    upload_batch(apps[0].test_client(), files, **{"async": "true"})
    apps[0].extensions["aoi"].batches.broker.delete(apps[0].config["REDIS_PREFIX"] + QUEUE)
    resumed = [None, None]

    def resume(n):
        resumed[n] = batch_service.resume_unfinished(apps[n])

    threads = [threading.Thread(target=resume, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in resumed) == [0, 3]
    assert queue_length(apps[0]) == 3


def worker_process(app):
    """Another worker process's claim notes: its own presence in Redis."""
    from aoi_flask.services.claims import ItemClaims
    from aoi_flask.services.presence import Presence

    presence = Presence(REDIS_URL)
    return ItemClaims(app.extensions["aoi"].batches.broker, presence, app.config["REDIS_PREFIX"])


def test_the_items_of_an_exited_worker_go_back_to_the_queue_at_once(
    cluster_app, model_service, sample_input
):
    app = cluster_app()
    files = [(sample_input, f"{n}.jpg") for n in range(5)]
    upload_batch(app.test_client(), files, **{"async": "true"})
    batches = app.extensions["aoi"].batches
    batches.broker.delete(app.config["REDIS_PREFIX"] + QUEUE)
    running, received, about_to_claim, elsewhere, finished = item_ids(app)
    dead, alive = worker_process(app), worker_process(app)

    def claim(claims, item_id, delivery):
        announce = lambda attempt: claims.note(item_id, delivery, attempt)  # noqa: E731
        return batch_service.claim_item(item_id, lease=600, announce=announce)

    with app.app_context():
        assert claim(dead, running, "d1") == 1  # killed while running it
        dead.note(received, "d2")  # killed before its task started
        dead.note(about_to_claim, "d3", 1)  # killed between the note and the claim
        dead.note(elsewhere, "d4")  # a duplicate message; a live worker runs the item
        assert claim(alive, elsewhere, "a1") == 1
        assert claim(dead, finished, "d5") == 1
        batch_service.finish_item(finished, 1, "done")  # killed after finishing, before the drop
    dead.presence.close()  # kill -9: Redis sees the connection close

    requeued = [running, received, about_to_claim]
    assert batches.sweep() == requeued
    assert queue_length(app) == 3  # their messages, long before any visibility timeout
    with app.app_context():
        states = [db.session.get(BatchItem, i).state for i in item_ids(app)]
    assert states == ["queued", "queued", "queued", "processing", "done"]
    assert {note.holder for note in batches.claims.notes()} == {alive.presence.name()}
    batches.broker.delete(app.config["REDIS_PREFIX"] + "sweep-lock")
    assert batches.sweep() == []  # nothing more to give back
    assert [run_task(app, i) for i in requeued] == ["done", "done", "done"]
    with app.app_context():
        assert db.session.get(BatchItem, running).attempts == 2  # taken over
        assert db.session.get(BatchItem, received).attempts == 1
    assert not batches.claims.notes() or {n.item_id for n in batches.claims.notes()} == {elsewhere}


def test_a_run_a_live_worker_noted_too_is_not_given_back(cluster_app, sample_input):
    # Two deliveries of one file: both workers noted attempt 1, the live one claimed it.
    app = cluster_app()
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    batches = app.extensions["aoi"].batches
    batches.broker.delete(app.config["REDIS_PREFIX"] + QUEUE)
    (item_id,) = item_ids(app)
    dead, alive = worker_process(app), worker_process(app)
    dead.note(item_id, "d1", 1)
    with app.app_context():
        announce = lambda attempt: alive.note(item_id, "a1", attempt)  # noqa: E731
        assert batch_service.claim_item(item_id, lease=600, announce=announce) == 1
    dead.presence.close()
    assert batches.sweep() == []
    with app.app_context():
        assert db.session.get(BatchItem, item_id).state == "processing"  # still the live one's


def test_when_a_worker_exits_every_queued_item_is_enqueued_again(
    cluster_app, model_service, sample_input
):
    # Its broker may have lost a message the worker took but never noted (kombu's
    # Redis transport pops it before it records it as unacknowledged).
    app = cluster_app()
    files = [(sample_input, "a.jpg"), (sample_input, "b.jpg")]
    upload_batch(app.test_client(), files, **{"async": "true"})
    batches = app.extensions["aoi"].batches
    item_id, waiting = item_ids(app)
    queue = app.config["REDIS_PREFIX"] + QUEUE
    batches.broker.delete(queue)  # the first file's message is gone,
    batches.submit([waiting])  # the second's waits in the queue
    dead = worker_process(app)
    batches.enlist(dead.presence.name())
    batches.enlist(batches.presence.name())  # a live worker: not swept
    assert batches.sweep() == []  # every worker alive
    batches.broker.delete(app.config["REDIS_PREFIX"] + "sweep-lock")
    dead.presence.close()
    assert batches.sweep() == [item_id]  # no duplicate of the waiting one
    assert queue_length(app) == 2
    workers = batches.broker.smembers(app.config["REDIS_PREFIX"] + "workers")
    assert workers == {batches.presence.name().encode()}  # struck off once swept
    assert run_task(app, item_id) == "done"


def test_messages_that_cannot_be_read_make_the_sweep_enqueue_every_orphan(
    cluster_app, sample_input
):
    app = cluster_app()
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    batches = app.extensions["aoi"].batches
    assert batches.waiting_item_ids() == set(item_ids(app))
    batches.broker.lpush(app.config["REDIS_PREFIX"] + QUEUE, b"not a kombu message")
    assert batches.waiting_item_ids() == set()  # then duplicates, never a lost item


def test_a_sweep_gives_back_only_the_run_that_was_abandoned(cluster_app, sample_input):
    app = cluster_app()
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    (item_id,) = item_ids(app)
    with app.app_context():
        assert batch_service.claim_item(item_id, lease=600) == 1
        age_claim(app, item_id, 10_000)
        assert batch_service.claim_item(item_id, lease=600) == 2  # run 1 lost its claim
        assert batch_service.release_abandoned(item_id, 1) is False
        assert batch_service.release_abandoned(item_id, None) is False
        assert db.session.get(BatchItem, item_id).state == "processing"
        assert batch_service.release_abandoned(item_id, 2) is True
        db.session.expire_all()
        assert db.session.get(BatchItem, item_id).state == "queued"
        assert batch_service.release_abandoned(item_id, 2) is True  # still needs a message


def test_a_task_notes_its_item_before_claiming_and_drops_the_note_after(
    cluster_app, model_service, sample_input, monkeypatch
):
    app = cluster_app()
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    (item_id,) = item_ids(app)
    claims = app.extensions["aoi"].batches.claims
    seen = []
    real_claim = batch_service.claim_item

    def claim_item(*args, **kwargs):
        def announce(attempt):
            kwargs["announce"](attempt)
            seen.append([(n.item_id, n.attempt) for n in claims.notes()])

        return real_claim(*args, **{**kwargs, "announce": announce})

    monkeypatch.setattr(batch_service, "claim_item", claim_item)
    assert run_task(app, item_id) == "done"
    assert seen == [[(item_id, 1)]]  # noted, with its run, before the claim
    assert claims.notes() == []


def test_single_uploads_count_against_the_cluster_cap(
    cluster_app, model_service, sample_input, redis_prefix
):
    app = cluster_app(MODEL_MAX_CONCURRENCY=2, MODEL_GATE_WAIT=0.2)
    client = app.test_client()
    other_process = ClusterSemaphore(REDIS_URL, 2, lease_seconds=30, prefix=redis_prefix)
    tokens = [other_process.try_acquire(), other_process.try_acquire()]
    assert all(tokens)
    assert client.get("/health").get_json()["cluster"]["model_slots_in_use"] == 2
    busy = upload(client, sample_input)
    assert busy.status_code == 503
    assert busy.get_json()["code"] == "MODEL_BUSY"
    assert model_calls(model_service) == 0
    other_process.release(tokens[0])
    assert upload(client, sample_input).status_code == 201
    assert client.get("/health").get_json()["cluster"]["model_slots_in_use"] == 1


def test_a_batch_item_without_a_slot_goes_back_to_the_queue(
    cluster_app, model_service, sample_input, redis_prefix, monkeypatch
):
    app = cluster_app(MODEL_MAX_CONCURRENCY=1, MODEL_GATE_WAIT=0.1)
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    (item_id,) = item_ids(app)
    holder = ClusterSemaphore(REDIS_URL, 1, lease_seconds=30, prefix=redis_prefix)
    token = holder.try_acquire()
    task = app.extensions["celery"].tasks[TASK_NAME]
    sent = []
    monkeypatch.setattr(task, "apply_async", lambda *a, **options: sent.append(options))
    task.push_request(id="m1", retries=0, called_directly=False, is_eager=False)
    try:
        with app.app_context(), pytest.raises(Retry):
            task.run(item_id)
    finally:
        task.pop_request()
    # To the back of the queue now: a countdown would park it in this worker.
    assert [(options.get("countdown"), options.get("eta")) for options in sent] == [(0, None)]
    with app.app_context():
        item = db.session.get(BatchItem, item_id)
        assert (item.state, item.attempts) == ("queued", 0)  # it never ran
    holder.release(token)
    assert run_task(app, item_id) == "done"


def test_a_busy_item_whose_retry_cannot_be_queued_gives_its_message_back(
    cluster_app, model_service, sample_input, redis_prefix, monkeypatch
):
    app = cluster_app(MODEL_MAX_CONCURRENCY=1, MODEL_GATE_WAIT=0.1)
    upload_batch(app.test_client(), [(sample_input, "a.jpg")], **{"async": "true"})
    (item_id,) = item_ids(app)
    holder = ClusterSemaphore(REDIS_URL, 1, lease_seconds=30, prefix=redis_prefix)
    token = holder.try_acquire()
    task = app.extensions["celery"].tasks[TASK_NAME]

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker went away")

    monkeypatch.setattr(task, "apply_async", broker_down)
    # As in a worker: not called directly, so retry() publishes a new message.
    task.push_request(id="m1", retries=0, called_directly=False, is_eager=False)
    try:
        with app.app_context(), pytest.raises(Reject) as rejected:
            task.run(item_id)
    finally:
        task.pop_request()
        holder.release(token)
    assert rejected.value.requeue is True  # unacknowledged: the broker delivers it again
    with app.app_context():
        assert db.session.get(BatchItem, item_id).state == "queued"


def test_a_live_holder_keeps_its_slot_past_the_lease(cluster_app):
    app = cluster_app(SLOT_LEASE_SECONDS=0.6)
    gate = app.extensions["aoi"].gate
    with gate(wait=1):
        time.sleep(1.5)  # 2.5 leases: the keep-alive renewed it
        assert gate.in_use() == 1
    assert gate.in_use() == 0


def test_embedded_mode_reports_its_own_pool(client):
    cluster = client.get("/health").get_json()["cluster"]
    assert cluster == {
        "mode": "embedded",
        "model_slots": 4,
        "reachable": True,
        "model_slots_in_use": 0,
        "queue_depth": 0,
        "taken_by_workers": 0,
    }


def test_a_synchronous_batch_waits_for_the_workers(cluster_app, model_service, sample_input):
    app = cluster_app()
    answers = []
    waiting = threading.Thread(
        target=lambda: answers.append(upload_batch(app.test_client(), [(sample_input, "a.jpg")]))
    )
    waiting.start()
    deadline = time.monotonic() + 30
    while not item_ids(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    (item_id,) = item_ids(app)
    time.sleep(0.5)
    assert not answers  # still waiting: no worker has run the item
    assert run_task(app, item_id) == "done"
    waiting.join(30)
    assert answers[0].status_code == 200
    assert answers[0].get_json()["processed"] == 1


def test_a_dead_workers_restore_lock_expires_within_seconds(cluster_app):
    from aoi_flask.tasks import celery_settings

    app = cluster_app()
    options = celery_settings(app.config)["broker_transport_options"]
    # kombu's default (300 s) would strand a killed worker's messages for five minutes
    # when it died holding the lock of the unacked-restore sweep.
    assert options["unacked_mutex_expire"] <= max(5, 2 * app.config["BROKER_RESTORE_INTERVAL"])
    assert options["unacked_mutex_expire"] < options["visibility_timeout"]
