"""The Open Inference Protocol on the real app: health, metadata, infer (JSON and binary), errors,
and `GET /api/v2/models`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import mlflow
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from monitoring.samples import METRICS
from tests.support.models import SAMPLE, Registry

ROW = [SAMPLE[m] for m in METRICS]
INFER = "/v2/models/neuroweaver/infer"


def _tensor(data: object, shape: list[int] | None = None, **fields: object) -> dict[str, object]:
    return {"name": "metrics", "datatype": "FP32", "shape": shape or [1, 5], "data": data, **fields}


def _infer(client: TestClient, path: str = INFER, **body: object):  # type: ignore[no-untyped-def]
    return client.post(
        path, content=orjson.dumps(body), headers={"content-type": "application/json"}
    )


def _score(response) -> list[float]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def test_get_server_metadata_lists_binary_tensor_data(client: TestClient) -> None:
    body = client.get("/v2").json()
    assert body["name"] == "automatrix" and "binary_tensor_data" in body["extensions"]


def test_server_is_live_and_not_ready_until_every_served_model_has_a_champion(
    client: TestClient,
) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/models/neuroweaver/ready").status_code == 200
    not_ready = client.get("/v2/models/failure-risk/ready")  # no failure-risk version yet
    assert not_ready.status_code == 503 and "failure-risk" in not_ready.json()["reason"]
    assert client.get("/v2/health/ready").json() == {"ready": False}


def test_get_model_metadata_names_the_input_and_output_tensors(
    client: TestClient, champion: str
) -> None:
    body = client.get("/v2/models/neuroweaver").json()
    assert body["versions"] == [champion]
    assert body["inputs"] == [{"name": "metrics", "datatype": "FP32", "shape": [-1, 5]}]
    assert body["outputs"] == [{"name": "performance_score", "datatype": "FP32", "shape": [-1, 1]}]


def test_infer_one_row_answers_the_predict_endpoints_score(
    client: TestClient, champion: str
) -> None:
    predicted = client.post("/api/v2/neuroweaver/predict", json=SAMPLE).json()["performance_score"]
    response = _infer(client, inputs=[_tensor(ROW)])
    assert math.isclose(_score(response)[0], predicted, rel_tol=1e-6)
    assert response.json()["model_version"] == champion


def test_infer_nested_fp64_rows_answer_one_score_each(client: TestClient) -> None:
    rows = [ROW, [10.0, 20.0, 30.0, 0.5, 100.0], [99.0, 1.0, 5.0, 50.0, 0.0]]
    instances = [dict(zip(METRICS, row, strict=True)) for row in rows]
    predicted = client.post("/api/v2/neuroweaver/predict", json={"instances": instances}).json()
    response = _infer(client, inputs=[_tensor(rows, [3, 5], datatype="FP64")])
    scores = _score(response)
    assert response.json()["outputs"][0]["shape"] == [3, 1]
    for got, want in zip(scores, predicted["predictions"], strict=True):
        assert math.isclose(got, want["performance_score"], rel_tol=1e-6)


def test_infer_binary_request_and_response_round_trip(client: TestClient) -> None:
    raw = np.array([ROW, ROW], dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "metrics",
                    "datatype": "FP32",
                    "shape": [2, 5],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "performance_score", "parameters": {"binary_data": True}}],
        }
    )
    response = client.post(
        INFER,
        content=header + raw,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    answer = orjson.loads(response.content[:length])
    assert answer["outputs"][0]["parameters"] == {"binary_data_size": 8}
    scores = np.frombuffer(response.content[length:], dtype="<f4")
    assert scores.shape == (2,) and scores[0] == scores[1]
    assert math.isclose(
        float(scores[0]), _score(_infer(client, inputs=[_tensor(ROW)]))[0], rel_tol=1e-6
    )


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ([_tensor(ROW, datatype="INT64")], "datatype INT64 is not FP32, FP64"),
        ([_tensor(ROW[:4], [1, 4])], "shape [1, 4] does not match [-1, 5]"),
        ([{**_tensor(ROW), "name": "x"}], "expected one input named 'metrics'"),
        ([_tensor([*ROW[:4], 1e39])], "finite"),
        ([_tensor([150.0, *ROW[1:]])], "cpu_usage=150.0 is outside [0, 100]"),
        ([_tensor([-1.0, *ROW[1:]])], "outside"),
        ([_tensor(["85", *ROW[1:]])], "numbers only"),
    ],
)
def test_infer_bad_input_is_400_with_the_protocols_error_body(
    client: TestClient, inputs: list[object], reason: str
) -> None:
    response = _infer(client, inputs=inputs)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_infer_missing_input_is_400(client: TestClient) -> None:
    response = _infer(client, id="x")
    assert response.status_code == 400 and "inputs" in response.json()["error"]


def test_infer_malformed_body_is_400(client: TestClient) -> None:
    response = client.post(INFER, content=b'{"inputs": [NaN')
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_infer_byte_count_mismatch_is_400(client: TestClient) -> None:
    header = orjson.dumps({"inputs": [{**_tensor(None), "parameters": {"binary_data_size": 16}}]})
    response = client.post(
        INFER,
        content=header + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "binary_data_size 16 does not match" in response.json()["error"]


def test_infer_unknown_model_is_404(client: TestClient) -> None:
    response = _infer(client, "/v2/models/nothing/infer", inputs=[_tensor(ROW)])
    assert response.status_code == 404 and "nothing" in response.json()["error"]


def test_infer_registered_version_answers_with_that_version(
    client: TestClient, model_registry: Registry
) -> None:
    other = model_registry.good[1]
    response = _infer(
        client, f"/v2/models/neuroweaver/versions/{other}/infer", inputs=[_tensor(ROW)]
    )
    served = _score(_infer(client, inputs=[_tensor(ROW)]))[0]
    assert response.json()["model_version"] == other
    assert _score(response)[0] != served  # v2 answers differently from the champion


@pytest.mark.parametrize("version", ["99", "abc"])
def test_unknown_version_is_404_for_metadata_ready_and_infer(
    client: TestClient, version: str
) -> None:
    base = f"/v2/models/neuroweaver/versions/{version}"
    for response in (
        client.get(base),
        client.get(f"{base}/ready"),
        _infer(client, f"{base}/infer", inputs=[_tensor(ROW)]),
    ):
        assert response.status_code == 404 and "error" in response.json()


def test_get_version_ready_of_a_corrupt_version_is_false(
    client: TestClient, model_registry: Registry
) -> None:
    response = client.get(f"/v2/models/neuroweaver/versions/{model_registry.corrupt}/ready")
    assert response.status_code == 503 and response.json()["ready"] is False


@pytest.fixture
def no_champion(api_settings: object) -> Iterator[TestClient]:
    from serving.app import create_app

    with TestClient(create_app()) as client:
        yield client


def test_model_without_champion_is_not_ready_and_infer_is_503(no_champion: TestClient) -> None:
    ready = no_champion.get("/v2/models/neuroweaver/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert no_champion.get("/v2/health/ready").json() == {"ready": False}
    response = _infer(no_champion, inputs=[_tensor(ROW)])
    assert response.status_code == 503 and "not ready" in response.json()["error"]


def test_infer_needs_the_api_key_when_one_is_set(
    champion: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring.config import reset
    from serving.app import create_app

    monkeypatch.setenv("API_KEY", "secret")
    reset()
    with TestClient(create_app()) as client:
        refused = _infer(client, inputs=[_tensor(ROW)])
        accepted = client.post(
            INFER, content=orjson.dumps({"inputs": [_tensor(ROW)]}), headers={"X-API-Key": "secret"}
        )
    assert refused.status_code == 401 and accepted.status_code == 200


def test_list_models_gives_every_registered_model_with_aliases(
    client: TestClient, champion: str
) -> None:
    registry = MlflowClient()
    registry.create_registered_model("capacity-forecaster")
    version = registry.create_model_version("capacity-forecaster", source="file:///nowhere/model")
    registry.set_registered_model_alias("capacity-forecaster", "champion", version.version)
    response = client.get("/api/v2/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert models["neuroweaver"]["aliases"] == {"champion": champion}
    assert models["neuroweaver"]["served_over_oip"] is True
    assert models["neuroweaver"]["serving_version"] == champion
    assert models["neuroweaver"]["latest_version"] == "3"
    assert models["capacity-forecaster"]["aliases"] == {"champion": "1"}
    assert models["capacity-forecaster"]["served_over_oip"] is False


def test_list_models_with_the_registry_down_is_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    mlflow.set_tracking_uri("http://127.0.0.1:9")  # nothing listens on the discard port
    response = client.get("/api/v2/models")
    assert response.status_code == 503 and "registry" in response.json()["detail"]
