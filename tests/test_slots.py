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


def exited(semaphore):
    """As when its process dies: Redis sees the presence connection close."""
    semaphore.presence.close()


def test_an_exited_holders_slots_are_free_once_its_calls_had_their_time(redis_prefix):
    holder = ClusterSemaphore(URL, 2, lease_seconds=60.0, prefix=redis_prefix, exit_grace=0.5)
    other = ClusterSemaphore(URL, 2, lease_seconds=60.0, prefix=redis_prefix, exit_grace=0.5)
    assert holder.try_acquire() and holder.try_acquire()
    exited(holder)
    assert other.try_acquire() is None  # taken under 0.5 s ago: its call may still run
    started = time.monotonic()
    first, second = other.acquire(timeout=5), other.acquire(timeout=5)
    assert first and second
    assert time.monotonic() - started < 3  # not the 60 s lease
    assert other.in_use() == 2


def test_a_live_holder_that_is_slow_to_renew_keeps_its_slot_until_the_lease(redis_prefix):
    # Nothing renews here: the holder is "stalled", but its connection is open.
    holder = ClusterSemaphore(URL, 1, lease_seconds=1.5, prefix=redis_prefix, exit_grace=0.1)
    other = ClusterSemaphore(URL, 1, lease_seconds=1.5, prefix=redis_prefix, exit_grace=0.1)
    assert holder.try_acquire()
    assert other.acquire(timeout=0.8) is None  # past the exit grace, still its slot
    assert other.acquire(timeout=5) is not None  # the lease ran out


def test_a_release_wakes_a_waiter_at_once(sem):
    sem.poll = 10.0  # without the wake-up the waiter would look again only after 10 s
    holders = [sem.try_acquire(), sem.try_acquire()]
    got = []
    waiter = threading.Thread(
        target=lambda: got.append((sem.acquire(timeout=20), time.monotonic()))
    )
    waiter.start()
    time.sleep(0.3)  # the waiter is blocked
    released = time.monotonic()
    sem.release(holders[0])
    waiter.join(20)
    token, woken = got[0]
    assert token is not None
    assert woken - released < 2.0


def test_a_renewal_after_a_reconnection_names_the_holder_anew(sem):
    token = sem.try_acquire()
    before = sem.redis.hget(sem.holders_key, token).decode()
    sem.presence._anchor.close()  # a dropped connection; the holder lives on
    sem.presence.refresh()  # its keeper's next tick reconnects, under a new name
    assert sem.renew([token]) == []
    after = sem.redis.hget(sem.holders_key, token).decode()
    assert after.rpartition("|")[2] == before.rpartition("|")[2]  # same time taken
    assert after.rpartition("|")[0] == sem.presence.name() != before.rpartition("|")[0]
