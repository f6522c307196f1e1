"""A stand-in for the external SegFormer AOI model service.

It speaks the service's HTTP contract and really analyses images with
classical image processing (no weights), for demos, end-to-end tests and
benchmarks. Everything it answers is labelled as coming from a simulator.
"""

from .app import create_simulator_app
from .options import FAILURE_KINDS, SimulatorOptions
from .server import SimulatorHandle, serve_in_thread

__all__ = [
    "FAILURE_KINDS",
    "SimulatorHandle",
    "SimulatorOptions",
    "create_simulator_app",
    "serve_in_thread",
]
