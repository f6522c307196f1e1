"""Who runs which batch item, in Redis beside the claim in `batch_items`
(distributed mode, issue #14).

A worker that claims an item records "<attempt>|<its presence name>" under the
item's id and removes it when the run ends. When the worker exits mid-run (a
crash, `kill -9`), its presence connection is gone and a sweep (tasks.py) gives
its items back to the queue within seconds, instead of after the broker's
visibility timeout. The claim in the database stays the truth: the record only
says where to look, and giving back is fenced by the run's attempt number."""

import logging
import threading
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

# KEYS: claims. ARGV: item id, the record written. Removes it only if it is unchanged.
_FORGET = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


@dataclass(frozen=True)
class ClaimRecord:
    item_id: int
    attempt: int
    holder: str  # presence name of the process running it
    raw: bytes


class ItemClaims:
    def __init__(self, client, presence, prefix):
        self.redis = client
        self.presence = presence
        self.key = f"{prefix}item-claims"
        self._forget = client.register_script(_FORGET)
        self._held = {}  # item id -> (attempt, record written)
        self._lock = threading.Lock()

    def hold(self, item_id, attempt):
        """Record that this process runs the item (best effort: without the record
        a lost run is found by the item lease and the visibility timeout)."""
        try:
            self.presence.keep(self._keep_alive)
            record = f"{attempt}|{self.presence.name()}"
            self.redis.hset(self.key, item_id, record)
        except redis.RedisError as exc:
            log.warning("batch item %s: claim not recorded in Redis (%s)", item_id, exc)
            return
        with self._lock:
            self._held[item_id] = (attempt, record)

    def drop(self, item_id):
        with self._lock:
            held = self._held.pop(item_id, None)
        if held is not None:
            self.forget(item_id, held[1])

    def forget(self, item_id, record):
        try:
            self._forget(keys=[self.key], args=[item_id, record])
        except redis.RedisError as exc:
            log.warning("batch item %s: claim record not removed (%s)", item_id, exc)

    def records(self):
        """Every claim recorded, of any process."""
        records = []
        for field, raw in self.redis.hgetall(self.key).items():
            attempt, _, holder = raw.decode().partition("|")
            records.append(ClaimRecord(int(field), int(attempt), holder, raw))
        return records

    def _keep_alive(self, name):
        """The keeper's tick: after a reconnection, record the held items under the
        new name (the old one reads as gone). True while anything is held."""
        with self._lock:
            held = dict(self._held)
        if not held or name is None:
            return bool(held)
        renamed = {
            item_id: (attempt, f"{attempt}|{name}")
            for item_id, (attempt, record) in held.items()
            if record != f"{attempt}|{name}"
        }
        if renamed:
            try:
                self.redis.hset(self.key, mapping={k: v[1] for k, v in renamed.items()})
            except redis.RedisError as exc:
                log.warning("claim records not renamed: %s", exc)
                return True
            with self._lock:
                for item_id, value in renamed.items():
                    if item_id in self._held:
                        self._held[item_id] = value
        return True
