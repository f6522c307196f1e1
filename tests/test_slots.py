"""Cluster semaphore on real Redis (db 15, own key prefix)."""

import threading
import time

import pytest

redis = pytest.importorskip("redis")

from conftest import REDIS_URL as URL  # noqa: E402

from aoi_flask.services.slots import ClusterSemaphore  # noqa: E402


@pytest.fixture
def sem(redis_prefix):
    s = ClusterSemaphore(URL, 2, lease_seconds=1.0, prefix=redis_prefix)
    yield s
    s.redis.delete(s.key)


def test_cap_holds_and_release_frees(sem):
    a, b = sem.try_acquire(), sem.try_acquire()
    assert a and b and sem.try_acquire() is None
    assert sem.in_use() == 2
    sem.release(a)
    assert sem.try_acquire() is not None


def test_dead_holder_lease_expires(sem):
    assert sem.try_acquire() and sem.try_acquire()
    assert sem.acquire(timeout=0.2) is None  # full; holders "died" without releasing
    assert sem.acquire(timeout=3.0) is not None  # their 1 s leases expired


def test_two_semaphores_share_one_cap_under_threads(redis_prefix):
    # Leases far longer than the test: a thread the loaded machine stalls for a second
    # must not lose its slot (that is test_dead_holder_lease_expires's subject).
    sem, other = (ClusterSemaphore(URL, 2, lease_seconds=60.0, prefix=redis_prefix) for _ in "ab")
    peak, active, lock = [0], [0], threading.Lock()
    both_held = threading.Event()  # the first holders wait for each other: peak 2 for sure
    tokens = []

    def work(s):
        token = s.acquire(timeout=30)
        with lock:
            tokens.append(token)
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            if active[0] == 2:
                both_held.set()
        both_held.wait(timeout=30)
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        s.release(token)

    threads = [threading.Thread(target=work, args=(s,)) for s in [sem, other] * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert None not in tokens and len(tokens) == 12
    assert peak[0] == 2
    assert sem.in_use() == 0


def test_renewal_keeps_a_live_holder_and_reports_lost_leases(sem):
    token = sem.try_acquire()
    for _ in range(3):
        time.sleep(0.5)
        assert sem.renew([token]) == []
    assert sem.in_use() == 1  # 1.5 s on a 1 s lease, still held
    time.sleep(1.2)
    assert sem.in_use() == 0
    assert sem.renew([token]) == [token]  # expired: renewal does not bring it back
    assert sem.in_use() == 0
