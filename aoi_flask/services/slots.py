"""A cluster-wide semaphore in Redis with expiring leases (issue #14, part 3).

Holders are tokens in a sorted set scored by their lease expiry. Acquiring runs one
Lua script that first drops expired leases, so a process killed while holding a slot
leaks it for at most `lease_seconds`. Inert unless a Redis URL is configured."""

import time
import uuid

import redis

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

    def in_use(self):
        self.redis.zremrangebyscore(self.key, "-inf", self._now())
        return self.redis.zcard(self.key)
