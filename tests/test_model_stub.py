"""scripts/model_stub.py: the real-size answers the upload benchmark and the load test
use must pass the agent's own model client, as the real service's do."""

import json
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from aoi_flask.services.segformer import SegformerClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import model_stub  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "aoi_flask" / "data" / "sample_analysis.json"


@pytest.fixture(scope="module")
def stub_url():
    model_stub.StubHandler.parts = model_stub.answer_parts()
    server = ThreadingHTTPServer(("127.0.0.1", 0), model_stub.StubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_stub_answer_passes_the_agents_client_at_real_size(stub_url):
    client = SegformerClient(stub_url, retries=0, connect_timeout=2, read_timeout=30)
    data = model_stub.sample_input()

    answer = client.analyse(data, "20260224_173819_ABC123.jpg", "image/jpeg", size=(1792, 1792))

    assert answer.filename == "20260224_173819_ABC123.jpg"  # the name sent is echoed
    assert answer.analysis == json.loads(SAMPLE.read_text())
    assert (answer.width, answer.height) == (1792, 1792)
    assert answer.total_defects == 7
    # Real size: the combined image is input | overlay, the answer ~13 MB of JSON.
    assert answer.images["combined"][16:24] == (3584).to_bytes(4, "big") + (1792).to_bytes(4, "big")
    assert sum(len(part) for part in model_stub.StubHandler.parts) > 12_000_000
