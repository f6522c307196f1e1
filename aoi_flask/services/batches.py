"""Batches: every input is checked and saved first, then analysed on a bounded
thread pool. Per-file state lives in `batch_items`, so progress can be watched,
failed files retried from their saved inputs, and unfinished work resumed after
a restart. Model calls go through the process-wide ModelGate."""

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update

from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import TRACE_FIELDS, Batch, BatchItem, Image
from .imaging import display_name
from .results import Accepted, commit_or_raise
from .storage import new_image_id, utc_now

log = logging.getLogger(__name__)

# When the database fails under a worker, it settles the item once the database
# answers again: waits of 0.5, 1, 2, 4, 5, 5 … seconds, about two minutes in all.
SETTLE_ATTEMPTS = 28


class BatchRunner:
    """The bounded pool that works off queued batch items."""

    def __init__(self, app, results, workers):
        self.app = app
        self.results = results
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="aoi-batch")
        self._pending = set()
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, item_ids):
        futures = []
        for item_id in item_ids:
            future = self.pool.submit(self._run, item_id)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._forget)
            futures.append(future)
        return futures

    def _forget(self, future):
        with self._lock:
            self._pending.discard(future)

    def wait_idle(self, timeout=None):
        with self._lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)

    def shutdown(self):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def queue_depth(self):
        """Items waiting in this process's pool, and items being run."""
        with self._lock:
            return max(0, len(self._pending) - self._running), self._running

    def _run(self, item_id):
        with self._lock:
            self._running += 1
        try:
            return self._run_item(item_id)
        finally:
            with self._lock:
                self._running -= 1

    def _run_item(self, item_id):
        with self.app.app_context():
            try:
                return run_item(self.results, item_id)
            except Exception:  # a worker must never die silently
                log.exception("batch item %s crashed", item_id)
                db.session.rollback()
        # Most likely the database failed under it (connection dropped): settle the
        # item as soon as the database answers, so it never stays queued or processing.
        return self._settle(item_id)

    def _settle(self, item_id):
        for attempt in range(SETTLE_ATTEMPTS):
            time.sleep(min(0.5 * 2**attempt, 5.0))
            with self.app.app_context():
                try:
                    return settle_item(self.results, item_id)
                except Exception as exc:
                    db.session.rollback()
                    log.warning("batch item %s: cannot settle it yet (%s)", item_id, exc)
        log.error("batch item %s left unfinished; it resumes when the agent restarts", item_id)
        return None


# ---- creating ----------------------------------------------------------------------


def create_batch(results, files, trace=None):
    """Check and save every file; returns the committed Batch. Bad files become
    failed items with their error; they never fail the others. `trace`: the
    traceability values every image of the batch is stored with."""
    moment = utc_now()
    batch = Batch(
        batch_id=new_image_id(moment), total_files=len(files), created_at=moment, **(trace or {})
    )
    accepted_items = []
    for index, (filename, data) in enumerate(files):
        # A refused file is listed under its display name too: never a raw name
        # (directories, NUL bytes, over the column's length).
        item = BatchItem(file_index=index, filename=display_name(filename), queued_at=moment)
        try:
            accepted = results.accept(data, filename)
        except ApiError as error:
            mark_failed(item, error.code, error.message, moment)
        else:
            item.filename = accepted.display_name
            item.img_unique_id = accepted.img_id
            item.input_path = accepted.input_path
            item.result_dir = accepted.result_dir
            item.state = "queued"
            accepted_items.append(accepted)
            results.checked_inputs.keep(accepted, len(data))
        batch.items.append(item)
    db.session.add(batch)
    try:
        commit_or_raise()
    except ApiError:
        for accepted in accepted_items:
            results.storage.remove(accepted.input_path, accepted.result_dir)
        raise
    return batch


def trace_of(batch):
    """The traceability values a batch was uploaded with."""
    values = {name: getattr(batch, name) for name in TRACE_FIELDS}
    return {name: value for name, value in values.items() if value is not None}


def mark_failed(item, code, message, moment):
    item.state = "failed"
    item.error_code = code
    item.error_message = message
    item.finished_at = moment


def queued_item_ids(batch_id):
    return db.session.scalars(
        select(BatchItem.id)
        .where(BatchItem.batch_id == batch_id, BatchItem.state == "queued")
        .order_by(BatchItem.file_index)
    ).all()


# ---- working -------------------------------------------------------------------------


def run_item(results, item_id, *, lease=None, slot_wait=None):
    """Analyse one queued item; returns its final state. With `lease` (distributed
    mode) an item whose claim is older than `lease` seconds is taken over: its
    worker died. With `slot_wait`, an item that finds no model slot within it goes
    back to the queue and "busy" is returned."""
    attempt = claim_item(item_id, lease)
    if attempt is None:
        return item_state(item_id)
    return work_item(results, item_id, attempt, slot_wait)


def claim_item(item_id, lease=None, announce=None):
    """Claim an item atomically (only one worker or process ever runs it); returns
    the claim's attempt number, or None when it is not claimable. `announce(attempt)`
    is called just before the claim is made, with the number it will have
    (distributed mode notes it, so that no claim is ever made unnoted)."""
    now = utc_now()
    seen = db.session.execute(
        select(BatchItem.state, BatchItem.attempts).where(BatchItem.id == item_id)
    ).one_or_none()
    if seen is None or seen.state not in ("queued", "processing"):
        db.session.rollback()
        return None
    claimable = BatchItem.state == "queued"
    if lease is not None:
        stale = now - timedelta(seconds=lease)
        claimable = or_(
            claimable, and_(BatchItem.state == "processing", BatchItem.started_at < stale)
        )
    if announce is not None:
        announce(seen.attempts + 1)
    claimed = db.session.execute(
        update(BatchItem)
        .where(BatchItem.id == item_id, BatchItem.attempts == seen.attempts, claimable)
        .values(state="processing", started_at=now, attempts=BatchItem.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    commit_or_raise()
    return seen.attempts + 1 if claimed else None


def work_item(results, item_id, attempt, slot_wait=None):
    """Run a claimed item. Its outcome is written only while the claim is still
    this attempt's, so a worker that lost its item never overwrites the new owner."""
    item = db.session.get(BatchItem, item_id)
    if attempt > 1:
        # An earlier run may have stored the image and died before marking the item.
        if item.img_unique_id and db.session.get(Image, item.img_unique_id) is not None:
            return finish_item(item_id, attempt, "done")
        clear_result_dir(results.storage, item.result_dir)
    accepted = Accepted(item.img_unique_id, item.result_dir, item.input_path, item.filename)
    try:
        data = results.storage.path(item.input_path).read_bytes()
        results.process(
            accepted, data, batch_id=item.batch_id, wait=slot_wait, trace=trace_of(item.batch)
        )
    except ApiError as error:
        db.session.rollback()
        if slot_wait is not None and error.code == "MODEL_BUSY":
            # Never ran: the claim is given back, so `attempts` counts real runs only.
            finish_item(item_id, attempt, "queued", finished=False, attempts=attempt - 1)
            return "busy"
        return finish_item(item_id, attempt, "failed", error.code, error.message)
    except (OSError, FileNotFoundError) as error:
        db.session.rollback()
        message = f"The saved input could not be read: {error}"
        return finish_item(item_id, attempt, "failed", "INPUT_MISSING", message)
    return finish_item(item_id, attempt, "done")


def update_own_run(item_id, attempt):
    """An UPDATE of the item that applies only while run `attempt` still owns it (the
    fence: a run taken over by another worker writes nothing)."""
    return update(BatchItem).where(
        BatchItem.id == item_id,
        BatchItem.attempts == attempt,
        BatchItem.state == "processing",
    )


def finish_item(item_id, attempt, state, code=None, message=None, *, finished=True, **values):
    db.session.execute(
        update_own_run(item_id, attempt)
        .values(
            state=state,
            error_code=code,
            error_message=message,
            finished_at=utc_now() if finished else None,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    commit_or_raise()
    db.session.expire_all()
    return item_state(item_id)


@dataclass
class Progress:
    """A batch's progress, derived from its items' states and times."""

    batch: Batch
    counts: dict = field(default_factory=dict)
    started_at: datetime | None = None
    last_finished_at: datetime | None = None

    @property
    def unfinished(self):
        return self.counts.get("queued", 0) + self.counts.get("processing", 0)

    @property
    def status(self):
        done, failed = self.counts.get("done", 0), self.counts.get("failed", 0)
        if self.unfinished:
            return "running" if self.counts.get("processing") or done or failed else "queued"
        if not failed:
            return "done"
        return "partial" if done else "failed"

    @property
    def finished_at(self):
        return None if self.unfinished else (self.last_finished_at or self.batch.created_at)


def progress_from_items(batch):
    """Progress of one batch whose items are already loaded (no extra query)."""
    items = batch.items
    return Progress(
        batch,
        counts=dict(Counter(item.state for item in items)),
        started_at=min((i.started_at for i in items if i.started_at), default=None),
        last_finished_at=max((i.finished_at for i in items if i.finished_at), default=None),
    )


def progress_of(batches):
    """Progress of several batches in one grouped query, keyed by batch id."""
    progress = {batch.batch_id: Progress(batch) for batch in batches}
    rows = db.session.execute(
        select(
            BatchItem.batch_id,
            BatchItem.state,
            func.count(),
            func.min(BatchItem.started_at),
            func.max(BatchItem.finished_at),
        )
        .where(BatchItem.batch_id.in_(list(progress)))
        .group_by(BatchItem.batch_id, BatchItem.state)
    ).all()
    for batch_id, state, number, started, finished in rows:
        entry = progress[batch_id]
        entry.counts[state] = number
        entry.started_at = min(filter(None, (entry.started_at, started)), default=None)
        entry.last_finished_at = max(filter(None, (entry.last_finished_at, finished)), default=None)
    return progress


# ---- retry and recovery ---------------------------------------------------------------


def retry_failed(storage, batch_id):
    """Queue again every failed item whose input is still stored; returns their ids."""
    batch = get_batch(batch_id)
    retried = []
    for item in batch.items:
        if item.state == "failed" and is_retryable(storage, item):
            item.state = "queued"
            item.error_code = item.error_message = item.finished_at = None
            retried.append(item.id)
    if retried:
        commit_or_raise()
    return retried


def is_retryable(storage, item):
    if item.state != "failed" or not item.input_path:
        return False
    try:
        return storage.path(item.input_path).is_file()
    except FileNotFoundError:
        return False


def settle_item(results, item_id, attempt=None):
    """Finish an item whose worker lost the database: run it if its start never
    reached the database; if it was processing, it is done when its image row
    exists, else failed and retryable (its partial result files removed). With
    `attempt`, only while that claim still owns the item."""
    item = db.session.get(BatchItem, item_id)
    if item is None:
        return None
    if attempt is not None and item.attempts != attempt:
        return item.state  # it went back to the queue or to another worker
    if item.state == "queued":
        return run_item(results, item_id)
    if item.state == "processing":
        if item.img_unique_id and db.session.get(Image, item.img_unique_id) is not None:
            item.state = "done"
            item.error_code = item.error_message = None
            item.finished_at = utc_now()
        else:
            clear_result_dir(results.storage, item.result_dir)
            mark_failed(
                item,
                "DATABASE_UNAVAILABLE",
                "The database connection failed while this file was analysed; nothing was "
                "stored. Retry the batch (POST /batches/<id>/retry).",
                utc_now(),
            )
        commit_or_raise()
    return item.state


def clear_result_dir(storage, result_dir):
    """Remove the files in an item's reserved result folder (partial results of an
    interrupted run, temporary files); the folder itself stays reserved."""
    if not result_dir:
        return
    try:
        folder = storage.path(result_dir)
        files = [path for path in folder.iterdir() if path.is_file()]
    except OSError:
        return
    for path in files:
        path.unlink(missing_ok=True)


def recover_unfinished(storage=None):
    """After a restart: items left `processing` either finished (their image row
    exists) or go back to `queued`, their partial result files removed (when
    `storage` is given). Returns the ids to resubmit."""
    stale = db.session.scalars(
        select(BatchItem).where(BatchItem.state.in_(("queued", "processing")))
    ).all()
    stored = set(
        db.session.scalars(
            select(Image.img_unique_id).where(
                Image.img_unique_id.in_([i.img_unique_id for i in stale if i.img_unique_id])
            )
        )
    )
    for item in stale:
        if item.img_unique_id in stored:
            item.state = "done"
            item.finished_at = item.finished_at or utc_now()
        else:
            item.state = "queued"
            if storage is not None:
                clear_result_dir(storage, item.result_dir)
    commit_or_raise()
    return [item.id for item in stale if item.state == "queued"]


def release_abandoned(item_id, attempt):
    """Distributed mode: after a worker exited holding the item's message (and, with
    `attempt`, about to run or running that attempt), give the item back to the
    queue: a run of that attempt goes back to `queued`, only while its claim still
    owns the item. True when the item is now queued: it needs a new message (the
    dead worker's is out of reach until its visibility timeout; a duplicate is
    harmless). A run stays counted in `attempts` (it may have reached the model)."""
    if attempt is not None:
        db.session.execute(
            update_own_run(item_id, attempt)
            .values(state="queued")
            .execution_options(synchronize_session=False)
        )
    commit_or_raise()
    return item_state(item_id) == "queued"


def item_state(item_id):
    """The item's state as the database has it now (None: no such item)."""
    return db.session.scalar(select(BatchItem.state).where(BatchItem.id == item_id))


def is_finished(item_id):
    """Done or failed (or gone): nothing runs it any more."""
    return item_state(item_id) not in ("queued", "processing")


def orphaned_item_ids(lease):
    """Distributed mode: items that may have lost their task: queued ones (their
    message may never have reached the broker) and ones claimed longer than `lease`
    seconds ago. Nothing is reset: whoever claims them first runs them, once."""
    stale = utc_now() - timedelta(seconds=lease)
    return db.session.scalars(
        select(BatchItem.id)
        .where(
            or_(
                BatchItem.state == "queued",
                and_(BatchItem.state == "processing", BatchItem.started_at < stale),
            )
        )
        .order_by(BatchItem.id)
    ).all()


def resume_unfinished(app):
    """Start-up hook of run.py and wsgi.py: requeue and resubmit what a previous
    process left unfinished. Not in the factory (tests build many apps). Embedded,
    only for one agent process per database (a second one would resume the first's
    work); distributed mode resumes by claims instead (tasks.CeleryBatches.resume)."""
    svc = app.extensions["aoi"]
    if hasattr(svc.batches, "resume"):
        return svc.batches.resume()
    with app.app_context():
        try:
            item_ids = recover_unfinished(svc.storage)
        except Exception as exc:  # e.g. a database not migrated yet
            db.session.rollback()
            log.warning("unfinished batch items were not resumed: %s", exc)
            return []
    if item_ids:
        log.info("resuming %d unfinished batch item(s)", len(item_ids))
        svc.batches.submit(item_ids)
    return item_ids


def unfinished_among(item_ids):
    """How many of these items are still queued or processing."""
    return db.session.scalar(
        select(func.count()).where(
            BatchItem.id.in_(list(item_ids)), BatchItem.state.in_(("queued", "processing"))
        )
    )


def cluster_status(gate, runner, distributed):
    """`cluster` of /health and GET /batches/{id}: the model slots in use across
    every process, the messages waiting and the tasks taken by workers
    (embedded: this process's pool)."""
    status = {"mode": "distributed" if distributed else "embedded", "model_slots": gate.limit}
    try:
        in_use = gate.in_use()
        waiting, running = runner.queue_depth()
    except Exception as exc:  # any Redis error means "not reachable"
        return {
            **status,
            "reachable": False,
            "model_slots_in_use": None,
            "queue_depth": None,
            "taken_by_workers": None,
            "error": str(exc)[:300],
        }
    return {
        **status,
        "reachable": True,
        "model_slots_in_use": in_use,
        "queue_depth": waiting,
        "taken_by_workers": running,
    }


# ---- reading -----------------------------------------------------------------------------


def get_batch(batch_id):
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        raise NotFound.of(
            "BATCH_NOT_FOUND",
            batch_id=batch_id,
        )
    return batch


def list_batches(page, limit):
    total = db.session.scalar(select(func.count()).select_from(Batch))
    batches = db.session.scalars(
        select(Batch)
        .order_by(Batch.created_at.desc(), Batch.batch_id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return total, batches


def images_of(img_ids):
    """Stored images by id (one query)."""
    if not img_ids:
        return {}
    rows = db.session.scalars(select(Image).where(Image.img_unique_id.in_(img_ids))).all()
    return {image.img_unique_id: image for image in rows}
