"""Start the AOI Inference Agent.

python run.py            waitress, settings from the environment / .env
python run.py --demo     also start the bundled model-service simulator
python run.py --dev      Flask's debug server instead of waitress
"""

import argparse
import atexit
import errno
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from aoi_flask import create_app
from aoi_flask.config import Config, DevelopmentConfig
from aoi_flask.security import startup_warnings
from aoi_flask.services.batches import resume_unfinished
from aoi_flask.services.storage import MB

log = logging.getLogger("aoi_flask.run")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="AOI Inference Agent")
    parser.add_argument("--demo", action="store_true", help="start the model-service simulator")
    parser.add_argument(
        "--dev", action="store_true", help="Flask debug server (not for production)"
    )
    parser.add_argument("--host", default=Config.HOST)
    parser.add_argument("--port", type=int, default=Config.PORT)
    parser.add_argument("--threads", type=int, default=Config.THREADS)
    return parser.parse_args(argv)


def listening_socket(host, port):
    """Bind the agent's port first, so that a second instance stops before it touches
    the database (migrations, resuming the first instance's batches)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sys.exit(bind_error(host, port, exc))
    return sock


def bind_error(host, port, exc):
    if exc.errno == errno.EADDRINUSE:
        return (
            f"error: port {port} on {host} is already in use (another AOI agent or program "
            "listens there); stop it, or choose another port with --port N or AOI_PORT=N."
        )
    if exc.errno == errno.EACCES:
        return (
            f"error: not allowed to listen on port {port} (ports below 1024 need root); "
            "choose another port with --port N or AOI_PORT=N."
        )
    return (
        f"error: cannot listen on {host}:{port} ({exc.strerror or exc}); check the address "
        "(--host / AOI_HOST) and the port (--port / AOI_PORT)."
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator():
    """The simulator runs in its own process, as the real model service would;
    it stops with the agent (SIGTERM included, so atexit handlers run)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aoi_flask.simulator", "--host", "127.0.0.1", "--port", str(port)]
    )
    atexit.register(process.terminate)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(f"{url}/health", timeout=1)
            return url
        except requests.RequestException:
            if process.poll() is not None:
                sys.exit("the model-service simulator failed to start")
            time.sleep(0.1)
    sys.exit("the model-service simulator did not answer within 10 s")


def prepare_database(app):
    """The embedded SQLite database is created and migrated on start."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from flask_migrate import upgrade

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    with app.app_context():
        upgrade(directory=str(Path(__file__).parent / "migrations"))


def main(argv=None):
    args = parse_args(argv)
    sock = listening_socket(args.host, args.port)
    overrides = {}
    if args.demo:
        overrides["MODEL_SERVICE_URL"] = start_simulator()
    app = create_app(DevelopmentConfig if args.dev else Config, **overrides)
    prepare_database(app)
    # Batch files a previous process left queued or processing (crash, kill -9) run again.
    resume_unfinished(app)
    startup_warnings(app)
    print(
        f"AOI Inference Agent on http://{args.host}:{args.port}/ "
        f"(model service {app.config['MODEL_SERVICE_URL']}"
        f"{', simulator' if args.demo else ''}; API docs at /apidocs)",
        flush=True,
    )
    if args.dev:
        sock.close()  # Flask's debug server binds the port itself
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
        return
    from waitress import serve

    serve(
        app,
        sockets=[sock],
        threads=args.threads,
        # Refuse oversize bodies before waitress buffers them (batch limit plus form overhead).
        max_request_body_size=app.config["MAX_BATCH_MB"] * MB + 16 * MB,
    )


if __name__ == "__main__":
    main()
