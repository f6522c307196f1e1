"""Distributed mode (AOI_BROKER_URL): batch items are Celery tasks on a Redis broker.

    celery -A aoi_flask.tasks worker --pool threads --concurrency 8

Web processes accept, save inputs and enqueue; any number of workers, on any host
that shares the database and the storage root, run the items. `batch_items` stays
the source of truth: a task claims its item with a conditional UPDATE, so a done
item is never redone and two deliveries of one message never both run it. A worker
notes in Redis each message it holds (services/claims.py); when a worker exits
(kill -9, a crash: its presence connection closes), the next sweep gives its items
back to the queue within seconds. A task is also acknowledged only when it finished
(acks_late, reject_on_worker_lost): what the sweep cannot see is delivered again
once the broker's visibility timeout has passed, and the new claim takes it over
because the old claim is older than the item lease. The Flask integration follows
Flask's "Background Tasks with Celery" pattern (celery_init_app, a Task class that
runs in an app context).
"""

import base64
import json
import logging
import time
import uuid

import redis
from celery import Celery, Task, shared_task
from celery.exceptions import Reject, Retry
from celery.signals import task_received, worker_ready, worker_shutdown
from flask import current_app

from .extensions import db, services
from .services import batches as batch_service
from .services.claims import ItemClaims

log = logging.getLogger(__name__)

TASK_NAME = "aoi.run_batch_item"
QUEUE = "batch-items"
# A task whose database went away settles its item for about two minutes
# (waits of 0.5, 1, 2, 4, 5, 5 … seconds), like the embedded pool.
SETTLE_ATTEMPTS = batch_service.SETTLE_ATTEMPTS
# Only one process at a time scans for orphaned items after a start.
RESUME_LOCK_SECONDS = 60
# Workers look for items abandoned by an exited worker this often (one at a time).
SWEEP_SECONDS = 2.0
# Up to this many waiting messages, a sweep reads which items they are for and
# enqueues no duplicate of them.
WAITING_SCAN_LIMIT = 50_000


def celery_init_app(app):
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def celery_settings(config):
    return {
        "broker_url": config["BROKER_URL"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout(config),
            "global_keyprefix": config["REDIS_PREFIX"],
            "unacked_restore_interval": config["BROKER_RESTORE_INTERVAL"],
            # Scan on every sweep: the interval alone says how soon a dead
            # worker's message comes back (after its visibility timeout).
            "unacked_restore_throttle": 1,
            # The restore sweep runs under a Redis lock; a worker killed while holding
            # it would stop every sweep for the lock's life (kombu's default: 300 s),
            # stranding the dead worker's messages that long. A sweep takes milliseconds.
            "unacked_mutex_expire": restore_lock_seconds(config),
        },
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # One message per worker thread at a time: a worker never sits on a queue
        # of reserved items that others could run.
        "worker_prefetch_multiplier": 1,
        # The agent's own log handler (aoi_flask.logs) stays in charge: it writes to
        # stderr, which must not be redirected back into logging.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def restore_lock_seconds(config):
    return max(5, 2 * int(config["BROKER_RESTORE_INTERVAL"]))


def longest_model_call(config):
    attempts = config["MODEL_RETRIES"] + 1
    wire = (config["MODEL_CONNECT_TIMEOUT"] + config["MODEL_READ_TIMEOUT"]) * attempts
    return wire + config["MODEL_RETRY_BACKOFF"] * (2**attempts)


def item_lease(config):
    """Seconds a claimed item belongs to its worker: longer than any one run."""
    configured = config["ITEM_LEASE_SECONDS"]
    return configured or config["MODEL_GATE_WAIT"] + longest_model_call(config) + 60.0


def visibility_timeout(config):
    """Above the item lease, so a redelivered message finds its old claim stale."""
    configured = config["BROKER_VISIBILITY_TIMEOUT"]
    return configured or item_lease(config) + 60.0


def redis_client(url):
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)


# ---- the task ----------------------------------------------------------------------


def retry_wait(retries):
    return min(0.5 * 2**retries, 5.0)


def retry_later(task, **options):
    """Raise the task's Retry. When the retry message cannot be published (a broker
    hiccup), the current message is given back instead of acknowledged, so no item
    is ever left queued without a message to run it."""
    try:
        raise task.retry(**options)
    except Retry:
        raise
    except Exception as exc:
        log.warning("retry of %s not queued (%s); its message goes back", task.name, exc)
        raise Reject(exc, requeue=True) from None


@shared_task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def run_batch_item(self, item_id, settle_attempt=None):
    """Claim and run one batch item; returns its state (None: not claimable)."""
    claims = services().batches.claims
    delivery = delivery_of(self.request.id, self.request.retries)
    try:
        if settle_attempt is not None:
            return settle(self, services().results, item_id, settle_attempt)
        return claim_and_run(self, claims, item_id, delivery)
    finally:
        claims.drop(delivery)


def claim_and_run(task, claims, item_id, delivery):
    config = current_app.config
    try:
        attempt = batch_service.claim_item(
            item_id,
            item_lease(config),
            announce=lambda attempt: claims.note(item_id, delivery, attempt),
        )
    except Exception as exc:  # nothing claimed: the database did not answer
        db.session.rollback()
        log.warning("batch item %s: cannot claim it yet (%s)", item_id, exc)
        retry_later(task, countdown=retry_wait(task.request.retries))
    if attempt is None:
        return None  # done, failed, or running elsewhere (a duplicate message)
    results = services().results
    try:
        state = batch_service.work_item(results, item_id, attempt, config["MODEL_GATE_WAIT"])
    except Exception:  # most likely the database failed under it
        log.exception("batch item %s crashed", item_id)
        db.session.rollback()
        retry_later(
            task, kwargs={"item_id": item_id, "settle_attempt": attempt}, countdown=retry_wait(0)
        )
    if state == "busy":
        # No model slot within the gate wait: to the back of the queue now (a
        # countdown would park the message in this worker, unseen if it died).
        retry_later(task, countdown=0)
    return state


def delivery_of(task_id, retries):
    """One delivery of a task's message (a retry keeps the task id)."""
    return f"{task_id or uuid.uuid4().hex}.{retries or 0}"


def settle(task, results, item_id, attempt):
    try:
        return batch_service.settle_item(results, item_id, attempt)
    except Exception as exc:
        db.session.rollback()
        retries = task.request.retries
        if retries >= SETTLE_ATTEMPTS:
            log.error("batch item %s left unfinished; a restart resumes it", item_id)
            return None
        log.warning("batch item %s: cannot settle it yet (%s)", item_id, exc)
        retry_later(task, countdown=retry_wait(retries))


# ---- the web processes' side ---------------------------------------------------------


class CeleryBatches:
    """Stands in for the embedded BatchRunner: submit enqueues, the workers run."""

    def __init__(self, app, celery_app, presence):
        self.app = app
        self.celery = celery_app
        self.prefix = app.config["REDIS_PREFIX"]
        self.broker = redis_client(app.config["BROKER_URL"])
        self.presence = presence
        self.claims = ItemClaims(self.broker, presence, self.prefix)

    def submit(self, item_ids):
        """Enqueue one task per item; returns one waitable for all of them."""
        with self.celery.producer_or_acquire() as producer:
            for item_id in item_ids:
                self.celery.send_task(TASK_NAME, args=[item_id], producer=producer)
        return [ItemsDone(item_ids)] if item_ids else []

    def wait_idle(self, timeout=None):
        """Nothing runs in this process."""

    def shutdown(self):
        self.broker.close()

    def queue_depth(self):
        """Messages waiting in the broker, and taken by workers but not finished."""
        return self.broker.llen(self.prefix + QUEUE), self.broker.hlen(self.prefix + "unacked")

    def resume(self):
        """After a start: enqueue the items that may have lost their task. Several
        processes starting at once: one scans (a Redis lock), and a duplicate
        message is harmless, since only its first claim runs the item."""
        lock = self.prefix + "resume-lock"
        try:
            if not self.broker.set(lock, "1", nx=True, ex=RESUME_LOCK_SECONDS):
                return []
            with self.app.app_context():
                item_ids = batch_service.orphaned_item_ids(item_lease(self.app.config))
            if item_ids:
                log.info("resuming %d unfinished batch item(s)", len(item_ids))
                self.submit(item_ids)
            return item_ids
        except Exception as exc:  # e.g. a database not migrated yet, Redis down
            log.warning("unfinished batch items were not resumed: %s", exc)
            return []

    def sweep(self):
        """After a worker exited (its presence is gone): give back to the queue the
        items it had noted (at once, whatever their claim's age), and enqueue the
        queued items again as a restart would, since the broker can lose a message
        taken by a worker killed before it noted it (kombu's Redis transport moves
        it from the queue first). One process sweeps at a time, at most every
        SWEEP_SECONDS; returns the ids requeued."""
        if not self.broker.set(self.prefix + "sweep-lock", 1, nx=True, px=int(SWEEP_SECONDS * 1e3)):
            return []
        workers = {name.decode() for name in self.broker.smembers(self.prefix + "workers")}
        notes = self.claims.notes()
        if not notes and not workers:
            return []
        gone = self.presence.gone(workers | {note.holder for note in notes})
        run = self.presence.run()
        # A run a live worker noted too may be its own (two deliveries raced to claim it).
        live = {(n.item_id, n.attempt) for n in notes if n.holder not in gone and n.attempt}
        requeue, settled = set(), []
        with self.app.app_context():
            for note in notes:
                if note.holder in gone:
                    attempt = None if (note.item_id, note.attempt) in live else note.attempt
                    if batch_service.release_abandoned(note.item_id, attempt):
                        requeue.add(note.item_id)
                    settled.append(note)
                elif not note.holder.startswith(f"{run}:") and batch_service.is_finished(
                    note.item_id
                ):
                    settled.append(note)  # noted before Redis restarted, and over
            exited = workers & gone
            if exited:
                orphans = batch_service.orphaned_item_ids(item_lease(self.app.config))
                requeue.update(set(orphans) - self.waiting_item_ids())
        if requeue:
            log.info(
                "requeued %d batch item(s) after %d worker(s) exited", len(requeue), len(exited)
            )
            self.submit(sorted(requeue))
        for note in settled:  # after the submit: a sweep cut short is done again
            self.claims.forget(note.field)
        earlier = {name for name in workers if not name.startswith(f"{run}:")}
        if exited or earlier:
            self.broker.srem(self.prefix + "workers", *(exited | earlier))
        return sorted(requeue)

    def waiting_item_ids(self, limit=WAITING_SCAN_LIMIT):
        """The items whose message waits in the broker's queue (kombu's Redis list of
        JSON envelopes around Celery protocol-2 bodies: [args, kwargs, embed]). Empty
        when the queue is longer than `limit` or a message cannot be read: then every
        orphan gets a message, duplicates included (harmless, as after a restart)."""
        key = self.prefix + QUEUE
        if self.broker.llen(key) > limit:
            return set()
        found = set()
        try:
            for raw in self.broker.lrange(key, 0, -1):
                envelope = json.loads(raw)
                body = envelope["body"]
                if envelope["properties"].get("body_encoding") == "base64":
                    body = base64.b64decode(body)
                args, kwargs, _ = json.loads(body)
                found.add(int(args[0] if args else kwargs["item_id"]))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("queued messages not read (%s): every orphan is enqueued again", exc)
            return set()
        return found

    def enlist(self, name):
        """A worker's keeper tick: be known as a worker (under its current name)."""
        if name is not None:
            self.broker.sadd(self.prefix + "workers", name)

    def leave(self):
        """A worker stopping cleanly: its exit needs no sweep."""
        self.broker.srem(self.prefix + "workers", self.presence.name())


class ItemsDone:
    """A synchronous batch waits for its items through the database (workers
    elsewhere report there, not here)."""

    poll_seconds = 0.25

    def __init__(self, item_ids):
        self.item_ids = list(item_ids)

    def result(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            db.session.rollback()  # a fresh snapshot on every look
            if not batch_service.unfinished_among(self.item_ids):
                return None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("the batch's items are not finished yet")
            time.sleep(self.poll_seconds)


# ---- the worker processes' side ----------------------------------------------------


@task_received.connect
def note_delivery(sender=None, request=None, **_):
    """In the worker's consumer, as a message arrives: note it before anything else,
    so a worker killed before it starts the task still has its item given back."""
    flask_app = getattr(getattr(sender, "app", None), "flask_app", None)
    if flask_app is None or request is None or request.name != TASK_NAME:
        return
    item_id = request.args[0] if request.args else request.kwargs.get("item_id")
    delivery = delivery_of(request.id, request.request_dict.get("retries"))
    flask_app.extensions["aoi"].batches.claims.note(item_id, delivery)


@worker_ready.connect
def resume_on_worker_start(sender=None, **_):
    flask_app = getattr(sender.app, "flask_app", None) if sender else None
    if flask_app is None:
        return
    batch_service.resume_unfinished(flask_app)
    batches = flask_app.extensions["aoi"].batches
    batches.presence.keep(lambda name: worker_tick(batches, name))
    log.info("worker %s ready for batch items", sender.hostname)


@worker_shutdown.connect
def leave_on_worker_stop(sender=None, **_):
    flask_app = getattr(getattr(sender, "app", None), "flask_app", None)
    if flask_app is not None:
        try:
            flask_app.extensions["aoi"].batches.leave()
        except Exception as exc:  # its exit then costs one needless resume
            log.warning("worker not struck off: %s", exc)


def worker_tick(batches, name):
    """The keeper's tick in a worker: stay enlisted, sweep; never stop ticking."""
    try:
        batches.enlist(name)
        batches.sweep()
    except Exception as exc:  # Redis or the database away: the next tick tries again
        log.warning("sweep for abandoned batch items failed: %s", exc)
    return True


_worker_app = None


def __getattr__(name):
    """`celery -A aoi_flask.tasks` finds the Celery app here; built on first use, so
    the web processes (which import this module) build no second Flask app."""
    global _worker_app
    if name != "celery":
        raise AttributeError(name)
    if _worker_app is None:
        from . import create_app

        flask_app = create_app()
        if "celery" not in flask_app.extensions:
            raise RuntimeError("set AOI_BROKER_URL (redis://…) to run Celery workers")
        _worker_app = flask_app.extensions["celery"]
        _worker_app.flask_app = flask_app
    return _worker_app
