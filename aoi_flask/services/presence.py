"""This process as the rest of the cluster sees it (distributed mode, issue #14).

A process is present while one Redis connection of its own is open. Redis drops
that connection the moment the process exits -- a crash, an OOM kill, `kill -9`:
its kernel closes the socket -- so other processes can tell a holder of model slots
or batch-item claims that has gone (its slots and claims can be taken over at once)
from one that is only slow to renew its leases (it keeps them: the leases, not this,
decide for a process that is frozen or whose host fell off the network)."""

import logging
import os
import threading
import time

import redis

log = logging.getLogger(__name__)


class Presence:
    """One connection held open for the life of the process, named
    "<Redis run id>:<client id>" (a restarted Redis numbers its clients afresh, so
    names of an earlier run are never judged). A keeper thread pings it every
    `interval` seconds and calls the registered listeners with the current name,
    so what they registered follows a reconnection."""

    def __init__(self, url, interval=1.0):
        self.url = url
        self.interval = interval
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        self._lock = threading.Lock()
        self._anchor = None
        self._pid = None
        self._name = None
        self._listeners = []
        self._keeper = None
        self._calls = 0  # keep() calls: a keeper with nothing to do exits only if none came
        self._closed = False

    def name(self):
        with self._lock:
            if self._name is None or self._pid != os.getpid():
                self._connect()
            return self._name

    def _connect(self):
        # A fresh connection after a fork (a prefork pool's child) or a first use.
        self._anchor = redis.Redis.from_url(
            self.url,
            single_connection_client=True,
            socket_timeout=5,
            socket_connect_timeout=3,
            socket_keepalive=True,
        )
        self._pid = os.getpid()
        self._name = self._anchor_name()

    def _anchor_name(self):
        run_id = self._anchor.info("server")["run_id"]
        return f"{run_id[:16]}:{self._anchor.client_id()}"

    def run(self):
        """The Redis run this process's name belongs to."""
        return self.name().partition(":")[0]

    def refresh(self):
        """Ping the connection (redis-py reconnects it if it broke); the name."""
        with self._lock:
            if self._anchor is None or self._pid != os.getpid():
                self._connect()
            else:
                self._name = self._anchor_name()
            return self._name

    def gone(self, names):
        """The names among `names` whose process has exited: named in this Redis
        run, connection closed. Empty when Redis refuses CLIENT LIST (a restricted
        managed Redis): then only the leases free what the dead held."""
        run = self.run()
        ids = {}
        for name in names:
            name_run, _, client_id = name.partition(":")
            if name_run == run and client_id.isdigit():
                ids[name] = client_id
        if not ids:
            return set()
        try:
            listed = self.redis.client_list(client_id=sorted(set(ids.values())))
        except redis.ResponseError as exc:
            log.warning("CLIENT LIST refused (%s): dead holders wait for their leases", exc)
            return set()
        present = {str(client["id"]) for client in listed}
        return {name for name, client_id in ids.items() if client_id not in present}

    def keep(self, listener):
        """Call `listener(name)` every `interval` seconds from the keeper thread while
        any listener answers True (it holds something). Starting the keeper checks
        the connection first, so what is taken next is registered under a live name."""
        with self._lock:
            self._calls += 1
            if listener not in self._listeners:
                self._listeners.append(listener)
            if self._keeper is not None and self._keeper.is_alive():
                return  # (a forked child inherits the object, not the thread)
        self.refresh()
        with self._lock:
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._keep, name="aoi-presence", daemon=True)
                self._keeper.start()

    def close(self):
        """Leave: stop the keeper and close the connection (others see this process
        gone, as after an exit)."""
        with self._lock:
            self._closed = True
            if self._anchor is not None:
                self._anchor.close()

    def _keep(self):
        while True:
            time.sleep(self.interval)
            with self._lock:
                if self._closed:
                    self._keeper = None
                    return
                calls = self._calls
            try:
                name = self.refresh()
            except Exception as exc:  # Redis unreachable: the listeners hear None
                log.warning("Redis not reachable from the keeper: %s", exc)
                name = None
            busy = False
            for listener in list(self._listeners):
                try:
                    busy = listener(name) or busy
                except Exception:  # one listener's failure must not stop the others
                    log.exception("presence listener %r failed", listener)
                    busy = True
            with self._lock:
                if not busy and calls == self._calls:
                    self._keeper = None  # the next keep() starts another
                    return
