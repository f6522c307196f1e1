"""A circuit breaker in front of the model service (SPEC §8: degrade, then recover).

closed     calls go through; `threshold` consecutive connection failures or
           timeouts in a row open the breaker (any answer from the service,
           even an error status, counts as "reachable" and resets the count).
open       calls fail at once, without a network call, for `cooldown` seconds.
half_open  after the cool-down exactly one call goes through as a probe; calls
           arriving meanwhile wait for its verdict (bounded by the client's own
           timeouts). The probe's success closes the breaker and lets them go,
           its failure opens the breaker for another cool-down and refuses them.

A threshold of 0 disables the breaker.
"""

import math
import threading
import time
from contextlib import contextmanager

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, threshold, cooldown, *, open_error, failures=(), clock=time.monotonic):
        """open_error(retry_in_seconds) builds the exception raised while open;
        failures: the exception types that count as "unreachable"."""
        self.threshold = threshold
        self.cooldown = cooldown
        self.open_error = open_error
        self.failures = tuple(failures)
        self.clock = clock
        self._lock = threading.Condition()
        self._consecutive = 0
        self._opened_at = None
        self._probing = False
        self.opened_total = 0
        self.rejected_total = 0

    @property
    def enabled(self):
        return self.threshold > 0

    def _state(self, now):
        if self._opened_at is None:
            return CLOSED
        return OPEN if now - self._opened_at < self.cooldown else HALF_OPEN

    def _retry_in(self, now):
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (now - self._opened_at))

    @property
    def state(self):
        with self._lock:
            return self._state(self.clock())

    def check(self):
        """Raise open_error while the breaker is open (before any work is done)."""
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            if self._state(now) != OPEN:
                return
            self.rejected_total += 1
            retry_in = self._retry_in(now)
        raise self.open_error(max(1, math.ceil(retry_in)))

    def _enter(self):
        """Admit a call; returns True when it is the half-open probe."""
        with self._lock:
            while True:
                now = self.clock()
                state = self._state(now)
                if state == CLOSED:
                    return False
                if state == HALF_OPEN and not self._probing:
                    self._probing = True
                    return True
                if state == OPEN:
                    break
                self._lock.wait()  # half-open, probe out: wait for its verdict
            self.rejected_total += 1
            retry_in = self._retry_in(now)
        raise self.open_error(max(1, math.ceil(retry_in)))

    def _exit(self, probe, failed):
        with self._lock:
            if probe:
                self._probing = False
                self._lock.notify_all()
            if failed is None:  # ended without a verdict on reachability
                return
            if not failed:
                self._consecutive = 0
                self._opened_at = None
                return
            self._consecutive += 1
            now = self.clock()
            if probe or (self._opened_at is None and self._consecutive >= self.threshold):
                self._opened_at = now
                self.opened_total += 1

    @contextmanager
    def call(self):
        """Guard one call: refuse it while open, and record its outcome."""
        if not self.enabled:
            yield
            return
        probe = self._enter()
        try:
            yield
        except self.failures:
            self._exit(probe, failed=True)
            raise
        except BaseException:
            self._exit(probe, failed=None)
            raise
        self._exit(probe, failed=False)

    def snapshot(self):
        """The breaker's state for /health."""
        with self._lock:
            now = self.clock()
            return {
                "state": self._state(now) if self.enabled else "disabled",
                "consecutive_failures": self._consecutive,
                "threshold": self.threshold,
                "cooldown_seconds": self.cooldown,
                "retry_in_seconds": round(self._retry_in(now), 1),
                "opened_total": self.opened_total,
                "rejected_total": self.rejected_total,
            }
