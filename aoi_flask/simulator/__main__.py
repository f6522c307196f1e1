"""Command line: python -m aoi_flask.simulator --port 8080 [options]."""

from __future__ import annotations

import argparse
import sys

from .app import create_simulator_app
from .options import FAILURE_KINDS, SimulatorOptions

WAITRESS_THREADS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aoi_flask.simulator",
        description="AOI model-service simulator (classical image processing, no weights).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="minimum seconds per image")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="0..1 chance per upload")
    parser.add_argument(
        "--failure-kinds",
        default=",".join(FAILURE_KINDS),
        help=f"comma-separated subset of {','.join(FAILURE_KINDS)}",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=30.0,
        help="hang time of a 'timeout' failure",
    )
    parser.add_argument("--no-model", action="store_true", help="start with no model loaded")
    parser.add_argument("--seed", type=int, default=None, help="seed of the failure RNG")
    parser.add_argument(
        "--unique-names",
        action="store_true",
        help="give every call's files a unique name (the real service does not: by default "
        "same-named uploads in the same second overwrite each other, as in production)",
    )
    parser.add_argument(
        "--collision-delay",
        type=float,
        default=0.0,
        help="seconds between saving a file and reading it back (widens the race window)",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="folder for uploads/ and results/ (default: a temp folder removed at exit)",
    )
    return parser.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    kinds = [kind.strip() for kind in args.failure_kinds.split(",") if kind.strip()]
    return SimulatorOptions(
        latency=args.latency,
        failure_rate=args.failure_rate,
        failure_kinds=kinds,
        timeout_seconds=args.timeout_seconds,
        model_loaded=not args.no_model,
        seed=args.seed,
        collide=not args.unique_names,
        collision_delay=args.collision_delay,
        work_dir=args.work_dir,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = options_from_args(args)
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from waitress import create_server

    server = create_server(
        create_simulator_app(options),
        host=args.host,
        port=args.port,
        threads=WAITRESS_THREADS,
    )
    print(
        f"AOI model-service SIMULATOR listening on http://{args.host}:{server.effective_port}",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
