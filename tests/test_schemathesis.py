"""Property-based API testing: schemathesis calls every documented operation of
the in-process app (WSGI, no network) with generated requests, valid and invalid,
in three phases: the documented examples, coverage of each parameter's edge
cases, and random fuzzing. The model service is requests-mock replaying the real
sample answer; generated image parts are real little JPEG/PNG/TIFF/BMP files, so
uploads go all the way through.

Every answer must be no server error (5xx), carry a documented status code and
media type, and match the documented schema and required headers.

The run is bounded and reproducible (fixed seed); widen it locally with
AOI_FUZZ_EXAMPLES=200 AOI_FUZZ_SEED=<n> python -m pytest tests/test_schemathesis.py.
The stateful phase is off: it cannot build `format: binary` bodies reliably.
"""

import io
import os

import pytest
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aoi_flask.samples import SAMPLE_BATCH, SAMPLE_ID


def restore_private_nodeid():
    """schemathesis 4.32 renames each generated test through pytest's private
    `Node._nodeid`, which pytest 9.2 replaced with a structured `_id`; map the old
    name onto the new one until schemathesis follows."""
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest < 9.2 still has the attribute
        return
    from _pytest.nodes import Node

    if not hasattr(Node, "_nodeid"):
        Node._nodeid = property(
            lambda node: node.nodeid,
            lambda node, value: setattr(node, "_id", coerce_node_id(value)),
        )


restore_private_nodeid()

MAX_EXAMPLES = int(os.environ.get("AOI_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("AOI_FUZZ_SEED", "20260224"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
IMAGE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/tiff": "TIFF", "image/bmp": "BMP"}

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["too_slow", "data_too_large", "filter_too_much"],
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {
            "examples": {"enabled": True, "fill-missing": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)


def image_strategy(fmt):
    """Small real images of one format, so a generated upload can be analysed."""

    def encode(size, mode, colour):
        buffer = io.BytesIO()
        Image.new(mode, size, colour).save(buffer, fmt)
        return buffer.getvalue()

    return st.builds(
        encode,
        st.tuples(st.integers(1, 48), st.integers(1, 48)),
        st.sampled_from(["L", "RGB"]),
        st.integers(0, 255),
    )


@pytest.fixture(scope="module", autouse=True)
def image_media_types():
    for media_type, fmt in IMAGE_FORMATS.items():
        schemathesis.openapi.media_type(media_type, image_strategy(fmt))
    yield
    from schemathesis.specs.openapi.media_types import unregister_all

    unregister_all()


class Seeded:
    """A stored image and a finished batch, so documented examples hit real data."""

    def __init__(self, app, sample_input):
        self.app, self.sample_input = app, sample_input
        self.client = app.test_client()
        self.img_id = self.upload()
        response = self.client.post(
            "/upload/batch",
            data={"images": [(io.BytesIO(sample_input), "a.jpeg"), (io.BytesIO(b"x"), "b.txt")]},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200, response.data[:300]
        self.batch_id = response.get_json()["batch_id"]

    def upload(self):
        response = self.client.post(
            "/upload",
            data={"image": (io.BytesIO(self.sample_input), "segformer_input.jpeg")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 201, response.data[:300]
        return response.get_json()["img_unique_id"]

    def real_ids(self, case):
        """Documented example ids → the seeded ones (a fresh image for DELETE)."""
        ids = {SAMPLE_ID: self.upload if case.method == "DELETE" else lambda: self.img_id}
        ids[SAMPLE_BATCH] = lambda: self.batch_id
        for values in (case.path_parameters, case.query):
            for name, value in (values or {}).items():
                if isinstance(value, str) and value in ids:
                    values[name] = ids[value]()


@pytest.fixture
def seeded(make_app, model_service, sample_input):
    return Seeded(make_app(), sample_input)


@pytest.fixture
def api_schema(seeded):
    return schemathesis.openapi.from_wsgi("/apispec.json", seeded.app, config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


def as_file_list(case):
    """schemathesis draws one value for an array property that has an encoding
    contentType (`images`); send it as the list of files the schema describes."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("images"), bytes):
        body["images"] = [body["images"]]


@schema.parametrize()
def test_api(case, seeded):
    seeded.real_ids(case)
    as_file_list(case)
    case.call_and_validate(checks=CHECKS)
    seeded.app.extensions["aoi"].batches.wait_idle(timeout=30)
