"""Which worker holds which batch item, in Redis beside the claim in `batch_items`
(distributed mode, issue #14).

A worker notes every message of a batch item it receives, under the item, the
delivery and its presence name, first with no run ("the message is here"), then,
just before it claims the item, with the attempt number the claim will have; the
note goes when the task ends. When the worker exits mid-run (a crash, `kill -9`),
its presence is gone and a sweep (tasks.py) gives its items back to the queue
within seconds instead of after the broker's visibility timeout. The claim in the
database stays the truth: a note only says where to look, and giving an item back
is fenced by the run's attempt number."""

import logging
import threading
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimNote:
    item_id: int
    attempt: int | None  # the run about to be claimed; None: the message only
    holder: str  # presence name of the process holding it
    field: str


class ItemClaims:
    def __init__(self, client, presence, prefix):
        self.redis = client
        self.presence = presence
        self.key = f"{prefix}item-claims"
        self._held = {}  # delivery -> [item id, value, field]
        self._lock = threading.Lock()

    def note(self, item_id, delivery, attempt=None):
        """Note that this process holds the item's message `delivery` (and is about
        to claim run `attempt`). Best effort: without the note a lost run is found
        by the item lease and the broker's visibility timeout."""
        value = "" if attempt is None else str(attempt)
        try:
            self.presence.keep(self._keep_alive)
            with self._lock:
                field = f"{item_id}@{delivery}@{self.presence.name()}"
                self.redis.hset(self.key, field, value)
                self._held[delivery] = [item_id, value, field]
        except redis.RedisError as exc:
            log.warning("batch item %s: claim not noted in Redis (%s)", item_id, exc)

    def drop(self, delivery):
        with self._lock:
            held = self._held.pop(delivery, None)
        if held is not None:
            self.forget(held[2])

    def forget(self, field):
        try:
            self.redis.hdel(self.key, field)
        except redis.RedisError as exc:
            log.warning("claim note %s not removed (%s)", field, exc)

    def notes(self):
        """Every note, of any process."""
        found = []
        for field, value in self.redis.hgetall(self.key).items():
            field, value = field.decode(), value.decode()
            item_id, _, rest = field.partition("@")
            holder = rest.partition("@")[2]
            attempt = int(value) if value else None
            found.append(ClaimNote(int(item_id), attempt, holder, field))
        return found

    def _keep_alive(self, name):
        """The keeper's tick: after a reconnection, note the held items under the
        new name (the old one reads as gone). True while anything is held."""
        if name is None:
            return True
        with self._lock:
            if not self._held:
                return False
            try:
                for delivery, (item_id, value, field) in list(self._held.items()):
                    if not field.endswith(f"@{name}"):
                        renamed = f"{item_id}@{delivery}@{name}"
                        self.redis.pipeline().hset(self.key, renamed, value).hdel(
                            self.key, field
                        ).execute()
                        self._held[delivery] = [item_id, value, renamed]
            except redis.RedisError as exc:
                log.warning("claim notes not renamed: %s", exc)
        return True
