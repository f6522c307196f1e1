"""Running the simulator on a loopback port inside the current process."""

from __future__ import annotations

import socket
import threading
from typing import Self

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_simulator_app
from .options import SimulatorOptions
from .state import SimulatorState


class QuietRequestHandler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY the
        # body waits for the client's delayed ACK (~40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # Benchmarks push hundreds of requests; one log line each drowns output.
    def log_request(self, code="-", size="-") -> None:
        return None


class SimulatorHandle:
    """A simulator serving in a background thread.

    ``options`` is the live SimulatorOptions object of the running app:
    changing its fields (or assigning a new one) changes the behaviour of
    the next requests.
    """

    def __init__(self, app, server) -> None:
        self.app = app
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="aoi-simulator", daemon=True
        )
        self.host = server.server_address[0]
        self.port = server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self._stopped = False
        self._thread.start()

    @property
    def _state(self) -> SimulatorState:
        return self.app.extensions["aoi_simulator"]

    @property
    def options(self) -> SimulatorOptions:
        return self._state.options

    @options.setter
    def options(self, options: SimulatorOptions) -> None:
        self._state.options = options

    def shutdown(self) -> None:
        """Stop serving; hanging 'timeout' requests and latency sleeps end at once."""
        if self._stopped:
            return
        self._stopped = True
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()


def serve_in_thread(
    options: SimulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
) -> SimulatorHandle:
    """Start a simulator on host:port (port 0 = any free port) and return its handle."""
    app = create_simulator_app(options or SimulatorOptions())
    server = make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
    return SimulatorHandle(app, server)
