"""Concurrent uploads through the agent to the simulator, which files inputs and
results by second + uploaded name like the real service (collisions on, widened
by a collision delay): every stored result must be the one its image gets alone."""

import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import upload, upload_batch
from PIL import Image, ImageOps

from aoi_flask.services.segformer import SegformerClient
from aoi_flask.simulator import SimulatorOptions, serve_in_thread

DATA = Path(__file__).parent / "data"
RESULT_KINDS = ("combined", "mask", "overlay")
COLLISION_DELAY = 0.4  # seconds between saving a file and reading it back


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def distinct_images():
    """name -> bytes: the sample, turned copies of it (same size) and its quarters."""
    original = (DATA / "segformer_input.jpeg").read_bytes()
    sample = Image.open(io.BytesIO(original))
    half = sample.width // 2
    images = {
        "sample.jpeg": original,
        "flipped.png": png(ImageOps.mirror(sample)),
        "rotated.png": png(sample.rotate(90)),
        "upside_down.png": png(ImageOps.flip(sample)),
    }
    for index, (x, y) in enumerate([(0, 0), (half, 0), (0, half), (half, half)]):
        images[f"quarter{index}.png"] = png(sample.crop((x, y, x + half, y + half)))
    assert len(set(images.values())) == len(images)
    return images


@pytest.fixture(scope="module")
def simulator():
    handle = serve_in_thread(SimulatorOptions(seed=3))
    yield handle
    handle.shutdown()


@pytest.fixture(scope="module")
def alone(simulator, distinct_images):
    """What each image gets when it is the only call: analysis and the three PNGs."""
    expected = {}
    for name, data in distinct_images.items():
        body = requests.post(f"{simulator.url}/upload", files={"image": (name, data)}, timeout=60)
        answer = body.json()
        assert answer["success"] is True, answer
        expected[data] = {
            "analysis": comparable(answer["analysis_results"]),
            **{kind: decode(answer[f"{kind}_image"]) for kind in RESULT_KINDS},
        }
    return expected


@pytest.fixture
def colliding(simulator):
    simulator.options = SimulatorOptions(seed=3, collide=True, collision_delay=COLLISION_DELAY)
    return simulator


def decode(value):
    return base64.b64decode(value)


def comparable(analysis):
    """The analysis without its timing (which differs from run to run)."""
    return {key: value for key, value in analysis.items() if key != "performance"}


def stored_result(client, img_id):
    analysis = json.loads(client.get(f"/download/json/{img_id}").data)
    result = {"analysis": comparable(analysis)}
    for kind in RESULT_KINDS:
        result[kind] = client.get(f"/download/image/{img_id}/{kind}").data
    return result


def run_concurrently(app, images, copies=2):
    """Every image `copies` times as a single upload, plus one batch of all of them,
    all at once. Returns (sent bytes, img_id or None) for every file."""
    singles = [(data, name) for name, data in images.items()] * copies
    start = threading.Barrier(len(singles) + 1)

    def single(data, name):
        start.wait()
        response = upload(app.test_client(), data, name=name)
        body = response.get_json()
        return [(data, body["img_unique_id"] if response.status_code == 201 else None)]

    def batch():
        start.wait()
        files = [(data, name) for name, data in images.items()]
        body = upload_batch(app.test_client(), files).get_json()
        by_index = {row["file_index"]: row for row in body["results"]}
        return [
            (data, by_index[index].get("img_unique_id") if by_index[index]["success"] else None)
            for index, (data, _) in enumerate(files)
        ]

    with ThreadPoolExecutor(len(singles) + 1) as pool:
        futures = [pool.submit(single, data, name) for data, name in singles]
        futures.append(pool.submit(batch))
        return [outcome for future in futures for outcome in future.result()]


class PeakWatch:
    """The most model calls in flight at once, sampled while the block runs."""

    def __init__(self, gate):
        self.gate, self.value = gate, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._done.wait(0.005):
            self.value = max(self.value, self.gate.active)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def count_outcomes(app, outcomes, alone):
    client = app.test_client()
    wrong = lost = 0
    for data, img_id in outcomes:
        if img_id is None:
            lost += 1
        elif stored_result(client, img_id) != alone[data]:
            wrong += 1
    return wrong, lost


@pytest.mark.parametrize("cap", [4, 8])
def test_concurrent_uploads_store_each_image_its_own_result(
    make_app, colliding, distinct_images, alone, cap
):
    app = make_app(
        MODEL_SERVICE_URL=colliding.url,
        MODEL_MAX_CONCURRENCY=cap,
        BATCH_WORKERS=cap,
        MODEL_READ_TIMEOUT=120.0,
        MODEL_GATE_WAIT=300.0,
        FSYNC=False,
    )
    with PeakWatch(app.extensions["aoi"].gate) as peak:
        outcomes = run_concurrently(app, distinct_images)
    wrong, lost = count_outcomes(app, outcomes, alone)
    print(
        f"cap {cap}: {len(outcomes)} uploads, at most {peak.value} model calls in flight, "
        f"{wrong} wrong, {lost} lost"
    )
    assert len(outcomes) == 3 * len(distinct_images)
    assert peak.value == cap  # the cap was reached: calls really overlapped
    assert (wrong, lost) == (0, 0)


def test_a_shared_model_call_name_is_caught_by_this_test(
    make_app, colliding, distinct_images, alone, monkeypatch
):
    """The control: sending every image under one name (`upload.<ext>`, as the agent
    once did) makes the same run store wrong results or lose some."""
    analyse = SegformerClient.analyse

    def shared_name(self, data, filename, *args, **kwargs):
        return analyse(self, data, "upload." + filename.rsplit(".", 1)[1], *args, **kwargs)

    monkeypatch.setattr(SegformerClient, "analyse", shared_name)
    app = make_app(
        MODEL_SERVICE_URL=colliding.url,
        MODEL_MAX_CONCURRENCY=4,
        BATCH_WORKERS=4,
        MODEL_GATE_WAIT=300.0,
        FSYNC=False,
    )
    outcomes = run_concurrently(app, distinct_images, copies=1)
    wrong, lost = count_outcomes(app, outcomes, alone)
    print(f"shared name, cap 4: {len(outcomes)} uploads, {wrong} wrong, {lost} lost")
    assert wrong + lost > 0
