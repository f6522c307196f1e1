"""A cluster-wide semaphore in Redis with expiring leases (issue #14, part 3).

Every slot taken is a lease in a sorted set (token -> expiry, on Redis's clock),
with its holder in a hash (token -> "<presence name>|<taken at>"). The holder
renews its leases while its calls run. A slot is free again when

- its holder releases it: the longest waiter is woken at once (a Redis list that
  waiters block on with BLPOP), so the cap never idles between two calls;
- its holder has exited (its presence connection is gone: a crash, `kill -9`) and
  the slot was taken at least `exit_grace` seconds ago, time for the call it had in
  flight to end at the model service;
- its lease ran out: the holder did not renew it for `lease_seconds` -- it is
  frozen, or its host fell off the network. Only then can the cap be exceeded (by
  a holder still calling after that long a stall).

A holder that is only slow to renew keeps its slot (its connection is open), so a
long lease costs nothing when a process crashes. Inert unless Redis is configured."""

import logging
import threading
import time
import uuid

import redis

from ..errors import ServiceUnavailable
from .presence import Presence
from .results import ModelGate

log = logging.getLogger(__name__)

# KEYS: leases, holders, wake list. ARGV: limit, token, lease seconds, presence name,
# then (token, holder) pairs whose holder has exited (the caller checked). Drops run-out
# leases and exited holders, takes a slot if one is free, wakes a waiter for any other
# slot it freed. Returns {1, now} or {0, now, holders...}.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local limit = tonumber(ARGV[1])
local freed = 0
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], token)
  redis.call('HDEL', KEYS[2], token)
  freed = freed + 1
end
for i = 5, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    freed = freed + 1
  end
end
local taken = 0
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4] .. '|' .. string.format('%.3f', now))
  taken = 1
end
local spare = math.min(freed - taken, limit - redis.call('ZCARD', KEYS[1]))
for _ = 1, spare do
  redis.call('LPUSH', KEYS[3], 1)
end
if spare > 0 then
  redis.call('LTRIM', KEYS[3], 0, limit - 1)
  redis.call('PEXPIRE', KEYS[3], 60000)
end
local stamp = string.format('%.3f', now)
if taken == 1 then
  return {1, stamp}
end
local reply = redis.call('HGETALL', KEYS[2])
table.insert(reply, 1, stamp)
table.insert(reply, 1, 0)
return reply
"""

# KEYS: leases, holders, wake list. ARGV: token, limit. Frees the slot and wakes one waiter.
_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], 1)
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[3], 60000)
return 1
"""

# KEYS: leases, holders. ARGV: lease seconds, presence name, tokens. Extends the leases
# still running (under the holder's current name: it may have reconnected); returns the
# tokens whose lease had run out or was taken away.
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local lost = {}
for i = 3, #ARGV do
  local token = ARGV[i]
  local holder = redis.call('HGET', KEYS[2], token)
  local expiry = redis.call('ZSCORE', KEYS[1], token)
  if holder and expiry and tonumber(expiry) > now then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), token)
    local renamed = ARGV[2] .. '|' .. string.match(holder, '|([^|]*)$')
    if renamed ~= holder then
      redis.call('HSET', KEYS[2], token, renamed)
    end
  else
    table.insert(lost, token)
  end
end
return lost
"""


class ClusterSemaphore:
    # A waiter looks again this often: the slots of an exited holder wake nobody.
    poll = 0.2

    def __init__(
        self,
        url,
        limit,
        lease_seconds=30.0,
        prefix="aoi:",
        name="model-slots",
        exit_grace=1.0,
        presence=None,
    ):
        self.redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3)
        self.limit = limit
        self.lease = lease_seconds
        self.exit_grace = exit_grace
        self.presence = presence or Presence(url, interval=keeper_interval(lease_seconds))
        self.key = f"{prefix}{name}"
        self.holders_key = f"{self.key}:holders"
        self.wake_key = f"{self.key}:wake"
        self._keys = [self.key, self.holders_key, self.wake_key]
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)
        self._renew = self.redis.register_script(_RENEW)

    def try_acquire(self):
        """A token when a slot was free, else None."""
        token = uuid.uuid4().hex
        reply = self._take(token)
        if reply[0] == 1:
            return token
        exited = self._exited(float(reply[1]), reply[2:])
        if exited and self._take(token, exited)[0] == 1:
            return token
        return None

    def _take(self, token, exited=()):
        args = [self.limit, token, self.lease, self.presence.name()]
        for pair in exited:
            args.extend(pair)
        return self._acquire(keys=self._keys, args=args)

    def _exited(self, now, flat):
        """(token, holder) of the slots whose holder has exited, taken long enough ago
        that the call it left running has ended at the model service."""
        due = {}
        for token, holder in zip(flat[::2], flat[1::2], strict=True):
            name, _, taken = holder.decode().rpartition("|")
            if now - float(taken) >= self.exit_grace:
                due[token.decode()] = (holder.decode(), name)
        if not due:
            return []
        gone = self.presence.gone({name for _, name in due.values()})
        return [(token, holder) for token, (holder, name) in due.items() if name in gone]

    def acquire(self, timeout=None):
        """A token, waiting up to `timeout` seconds (None: forever); None if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            token = self.try_acquire()
            if token:
                return token
            wait = self.poll
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            # Woken as soon as a holder releases a slot (the longest waiter first).
            self.redis.blpop([self.wake_key], timeout=max(wait, 0.01))

    def release(self, token):
        self._release(keys=self._keys, args=[token, self.limit])

    def renew(self, tokens):
        """Extend the leases of live holders; returns the tokens whose slot was no
        longer held (their lease had run out, or their holder was judged gone)."""
        tokens = list(tokens)
        if not tokens:
            return []
        lost = self._renew(keys=self._keys[:2], args=[self.lease, self.presence.name(), *tokens])
        return [token.decode() for token in lost]

    def in_use(self):
        seconds, micros = self.redis.time()
        return self.redis.zcount(self.key, f"({seconds + micros / 1e6}", "+inf")


def keeper_interval(lease_seconds):
    """How often a holder renews its leases and checks its presence connection."""
    return min(0.5, lease_seconds / 3)


class ClusterGate(ModelGate):
    """The model gate of distributed mode: `limit` slots for the whole cluster,
    held as leases in Redis. The presence keeper renews the leases this process
    holds, so a live holder never loses its slot however long the model takes."""

    def __init__(self, semaphore, retry_after):
        super().__init__(semaphore.limit, retry_after)
        self.semaphore = semaphore
        self._held = set()
        self._held_lock = threading.Lock()

    def acquire(self, wait):
        presence = self.semaphore.presence
        try:
            presence.keep(self._keep_alive)  # a checked name before taking a slot
            token = self.semaphore.acquire(timeout=wait)
        except redis.RedisError as exc:
            raise redis_unavailable(exc) from None
        if token:
            with self._held_lock:
                self._held.add(token)
            presence.keep(self._keep_alive)
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

    def _keep_alive(self, name):
        """The keeper's tick: renew what is held; True while anything is."""
        with self._held_lock:
            held = list(self._held)
        if not held or name is None:
            return bool(held)
        try:
            lost = self.semaphore.renew(held)
        except redis.RedisError as exc:
            log.warning("model slot leases not renewed: %s", exc)
            return True
        if lost:
            log.warning("%d model slot lease(s) had run out before renewal", len(lost))
        return True


def redis_unavailable(exc):
    return ServiceUnavailable.of("REDIS_UNAVAILABLE", reason=exc, headers={"Retry-After": 10})
