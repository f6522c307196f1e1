"""A cluster-wide semaphore in Redis with expiring leases (issue #14, part 3).

Holders are tokens in a sorted set scored by their lease expiry. Acquiring runs one
Lua script that first drops expired leases, so a process killed while holding a slot
leaks it for at most `lease_seconds`. Inert unless a Redis URL is configured."""

import logging
import threading
import time
import uuid

import redis

from ..errors import ServiceUnavailable
from .results import ModelGate

log = logging.getLogger(__name__)

# KEYS[1] set; ARGV: now, limit, token, expiry. Drops dead holders, then takes a slot.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  return 1
end
return 0
"""


class ClusterSemaphore:
    def __init__(self, url, limit, lease_seconds=300.0, prefix="aoi:", name="model-slots"):
        self.redis = redis.Redis.from_url(url)
        self.limit = limit
        self.lease = lease_seconds
        self.key = f"{prefix}{name}"
        self._acquire = self.redis.register_script(_ACQUIRE)

    def _now(self):
        # Redis's clock, so hosts with skewed clocks agree on who has expired.
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def try_acquire(self):
        """A token when a slot was free, else None."""
        token = uuid.uuid4().hex
        now = self._now()
        got = self._acquire(keys=[self.key], args=[now, self.limit, token, now + self.lease])
        return token if got else None

    def acquire(self, timeout=None, poll=0.05):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            token = self.try_acquire()
            if token or (deadline is not None and time.monotonic() >= deadline):
                return token
            time.sleep(poll)

    def release(self, token):
        self.redis.zrem(self.key, token)

    def renew(self, tokens):
        """Extend the leases of live holders; returns the tokens whose lease had
        already expired (their slot may have gone to someone else)."""
        tokens = list(tokens)
        if not tokens:
            return []
        expiry = self._now() + self.lease
        pipe = self.redis.pipeline(transaction=False)
        for token in tokens:
            pipe.zadd(self.key, {token: expiry}, xx=True, ch=True)
        return [token for token, changed in zip(tokens, pipe.execute(), strict=True) if not changed]

    def in_use(self):
        self.redis.zremrangebyscore(self.key, "-inf", self._now())
        return self.redis.zcard(self.key)


class ClusterGate(ModelGate):
    """The model gate of distributed mode: `limit` slots for the whole cluster,
    held as leases in Redis. A keep-alive thread renews the leases this process
    holds every third of the lease, so a live holder never loses its slot however
    long the model takes, and a dead one frees it within one lease."""

    def __init__(self, semaphore, retry_after):
        super().__init__(semaphore.limit, retry_after)
        self.semaphore = semaphore
        self._held = set()
        self._held_lock = threading.Lock()
        self._keeper = None

    def acquire(self, wait):
        try:
            token = self.semaphore.acquire(timeout=wait)
        except redis.RedisError as exc:
            raise redis_unavailable(exc) from None
        if token:
            with self._held_lock:
                self._held.add(token)
            self._start_keeper()
        return token

    def release(self, token):
        with self._held_lock:
            self._held.discard(token)
        try:
            self.semaphore.release(token)
        except redis.RedisError as exc:  # the lease runs out by itself
            log.warning("model slot not released (%s); it frees itself within its lease", exc)

    def in_use(self):
        return self.semaphore.in_use()

    def _start_keeper(self):
        with self._held_lock:
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(
                    target=self._keep_alive, name="aoi-slot-keeper", daemon=True
                )
                self._keeper.start()

    def _keep_alive(self):
        while True:
            time.sleep(self.semaphore.lease / 3)
            with self._held_lock:
                held = list(self._held)
            try:
                lost = self.semaphore.renew(held)
            except redis.RedisError as exc:
                log.warning("model slot leases not renewed: %s", exc)
                continue
            if lost:
                log.warning("%d model slot lease(s) had expired before renewal", len(lost))


def redis_unavailable(exc):
    return ServiceUnavailable.of("REDIS_UNAVAILABLE", reason=exc, headers={"Retry-After": 10})
