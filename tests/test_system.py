"""GET /health: agent, database, model service and storage."""

import requests
from conftest import MODEL_HEALTH, MODEL_INFO, MODEL_URL


def test_healthy(client, model_service):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"]["reachable"] is True
    assert body["database"]["backend"] in ("sqlite", "mysql")
    model = body["model_service"]
    assert model["reachable"] and model["model_loaded"]
    assert model["device"] == "cuda"
    assert model["model_name"] == MODEL_INFO["model_name"]
    assert model["simulator"] is False
    assert model["url"] == MODEL_URL
    assert body["storage"]["writable"] is True
    assert body["storage"]["free_bytes"] > 0
    assert body["limits"]["max_upload_mb"] == 50


def test_degraded_when_model_service_is_down(client, requests_mock):
    requests_mock.get(f"{MODEL_URL}/health", exc=requests.exceptions.ConnectionError)
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["model_service"]["reachable"] is False
    assert "ConnectionError" in body["model_service"]["error"]


def test_degraded_when_no_model_is_loaded(client, requests_mock):
    requests_mock.get(f"{MODEL_URL}/health", json={**MODEL_HEALTH, "model_loaded": False})
    requests_mock.get(f"{MODEL_URL}/api/model/current", status_code=503, json={})
    body = client.get("/health").get_json()
    assert body["status"] == "degraded"
    assert body["model_service"]["model_loaded"] is False


def test_simulator_is_labelled(client, requests_mock):
    requests_mock.get(f"{MODEL_URL}/health", json={**MODEL_HEALTH, "system": "AOI simulator"})
    requests_mock.get(f"{MODEL_URL}/api/model/current", json=MODEL_INFO)
    assert client.get("/health").get_json()["model_service"]["simulator"] is True


def test_down_with_503_when_the_database_is_unreachable(make_app, model_service, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:1/aoi_db")
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down"
    assert body["database"]["reachable"] is False
