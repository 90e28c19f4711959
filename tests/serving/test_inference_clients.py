"""The Open Inference Protocol with clients no one here wrote, over real HTTP: tritonclient (binary
tensor data on and off) and open-inference-openapi (generated from the protocol's OpenAPI), on
one server for the module that serves NeuroWeaver's and failure-risk's champions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import tritonclient.http as triton
from mlflow import MlflowClient
from open_inference.openapi.client import OpenInferenceClient
from open_inference.openapi.errors import BadRequestError
from open_inference.openapi.types import InferenceRequest, RequestInput
from tritonclient.utils import InferenceServerException

from monitoring.assess.failure_model import FEATURES, MODEL_NAME, STATE_FILE, FittedRisk
from monitoring.config import reset
from monitoring.neuroweaver import registry
from monitoring.samples import METRICS
from tests.support.api import use_api_environment
from tests.support.histories import simulated
from tests.support.live import LiveServer, serve
from tests.support.models import SAMPLE, Registry, set_champion

ROWS = np.array(
    [[SAMPLE[m] for m in METRICS], [10.0, 20.0, 30.0, 0.5, 100.0], [99.0, 1.0, 5.0, 50.0, 0.0]],
    dtype=np.float32,
)
RISK_PYFUNC = Path(registry.__file__).parents[1] / "assess" / "failure_pyfunc.py"


@dataclass(frozen=True)
class Served:
    server: LiveServer
    champion: str  # NeuroWeaver's
    risk: FittedRisk  # failure-risk's champion state
    risk_version: str


def _register_risk(state: FittedRisk) -> str:
    with mlflow.start_run(run_name="failure-risk-test"):
        version = registry.register_state(MODEL_NAME, state.to_dict(), RISK_PYFUNC, STATE_FILE)
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version)
    return version


@pytest.fixture(scope="module")
def served(model_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from monitoring.assess.failure_training import train
    from serving.app import create_app

    risk = train(simulated(3), horizon=30).state
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_api_environment(tmp_path_factory.mktemp("oip"), monkeypatch, model_registry)
        set_champion(model_registry.good[0])
        risk_version = _register_risk(risk)
        with serve(create_app()) as server:
            yield Served(server, model_registry.good[0], risk, risk_version)
    reset()


@pytest.fixture(scope="module")
def live_server(served: Served) -> LiveServer:
    return served.server


@pytest.fixture(scope="module")
def champion(served: Served) -> str:
    return served.champion


@pytest.fixture(scope="module")
def triton_client(live_server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(
        url=live_server.url, connection_timeout=10, network_timeout=10
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def predicted(live_server: LiveServer) -> list[float]:
    """The predict endpoint's scores for ROWS, to compare with."""
    instances = [dict(zip(METRICS, map(float, row), strict=True)) for row in ROWS]
    answer = httpx.post(
        f"http://{live_server.url}/api/v2/neuroweaver/predict", json={"instances": instances}
    ).json()
    return [p["performance_score"] for p in answer["predictions"]]


def _inputs(rows: np.ndarray, binary: bool, datatype: str = "FP32") -> list[triton.InferInput]:
    tensor = triton.InferInput("metrics", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return [tensor]


def test_tritonclient_is_server_live_ready_and_model_ready(
    triton_client: triton.InferenceServerClient,
) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("neuroweaver")
    assert not triton_client.is_model_ready("nothing")


def test_tritonclient_get_model_metadata_names_the_tensors(
    triton_client: triton.InferenceServerClient, champion: str
) -> None:
    metadata = triton_client.get_model_metadata("neuroweaver")
    assert metadata["versions"] == [champion]
    assert metadata["inputs"][0] == {"name": "metrics", "datatype": "FP32", "shape": [-1, 5]}
    assert metadata["outputs"][0]["name"] == "performance_score"
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_answers_the_predict_endpoints_scores(
    triton_client: triton.InferenceServerClient, predicted: list[float], binary: bool
) -> None:
    outputs = [triton.InferRequestedOutput("performance_score", binary_data=binary)]
    result = triton_client.infer("neuroweaver", _inputs(ROWS, binary), outputs=outputs)
    scores = result.as_numpy("performance_score")
    assert scores.shape == (3, 1) and scores.dtype == np.float32
    for got, want in zip(scores[:, 0], predicted, strict=True):
        assert math.isclose(float(got), want, rel_tol=1e-6)


def test_tritonclient_infer_without_outputs_gets_binary_scores(
    triton_client: triton.InferenceServerClient, predicted: list[float]
) -> None:
    result = triton_client.infer("neuroweaver", _inputs(ROWS.astype(np.float64), True, "FP64"))
    assert result.get_output("performance_score")["parameters"]["binary_data_size"] == 12
    assert math.isclose(
        float(result.as_numpy("performance_score")[0, 0]), predicted[0], rel_tol=1e-6
    )


def test_tritonclient_infer_registered_version_answers_with_that_version(
    triton_client: triton.InferenceServerClient, model_registry: Registry
) -> None:
    other = model_registry.good[1]
    result = triton_client.infer("neuroweaver", _inputs(ROWS, True), model_version=other)
    assert result.get_response()["model_version"] == other


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_bad_datatype_raises_with_the_servers_reason(
    triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    with pytest.raises(InferenceServerException, match="datatype INT32 is not FP32, FP64"):
        triton_client.infer("neuroweaver", _inputs(ROWS.astype(np.int32), binary, "INT32"))


def test_tritonclient_wrong_shape_raises_with_the_servers_reason(
    triton_client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match=r"shape \[3, 4\] does not match"):
        triton_client.infer("neuroweaver", _inputs(ROWS[:, :4].copy(), True))


@pytest.fixture(scope="module")
def oip_client(live_server: LiveServer) -> OpenInferenceClient:
    return OpenInferenceClient(base_url=f"http://{live_server.url}", timeout=10)


def test_open_inference_client_reads_health_and_metadata(
    oip_client: OpenInferenceClient, champion: str
) -> None:
    oip_client.check_server_liveness()
    oip_client.check_server_readiness()
    oip_client.check_model_readiness("neuroweaver")
    metadata = oip_client.read_model_metadata("neuroweaver")
    assert metadata.versions == [champion]
    assert [(t.name, t.datatype, t.shape) for t in metadata.inputs] == [
        ("metrics", "FP32", [-1, 5])
    ]


def test_open_inference_client_infer_answers_the_predict_endpoints_score(
    oip_client: OpenInferenceClient, predicted: list[float]
) -> None:
    request = InferenceRequest(
        inputs=[RequestInput(name="metrics", shape=[3, 5], datatype="FP64", data=ROWS.tolist())]
    )
    answer = oip_client.model_infer("neuroweaver", request=request)
    scores = answer.outputs[0].data.__root__
    for got, want in zip(scores, predicted, strict=True):
        assert math.isclose(float(got), want, rel_tol=1e-6)  # type: ignore[arg-type]


def test_open_inference_client_bad_request_raises_with_the_error_body(
    oip_client: OpenInferenceClient,
) -> None:
    request = InferenceRequest(
        inputs=[RequestInput(name="wrong", shape=[1, 5], datatype="FP32", data=[1, 2, 3, 4, 5])]
    )
    with pytest.raises(BadRequestError) as caught:
        oip_client.model_infer("neuroweaver", request=request)
    assert "expected one input named 'metrics'" in caught.value.body["error"]


# --- failure-risk over the protocol ---------------------------------------------------------


def _feature_rows(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(0.0, 1.0, (n, len(FEATURES))).astype(np.float32)


def test_tritonclient_failure_risk_metadata_names_its_feature_tensor(
    triton_client: triton.InferenceServerClient, served: Served
) -> None:
    assert triton_client.is_model_ready(MODEL_NAME)
    metadata = triton_client.get_model_metadata(MODEL_NAME)
    assert metadata["versions"] == [served.risk_version]
    assert metadata["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, len(FEATURES)]}
    ]
    assert metadata["outputs"] == [{"name": "risk", "datatype": "FP32", "shape": [-1, 1]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_failure_risk_infer_answers_the_champions_calibrated_risk(
    triton_client: triton.InferenceServerClient, served: Served, binary: bool
) -> None:
    rows = _feature_rows()
    tensor = triton.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput("risk", binary_data=binary)]
    result = triton_client.infer(MODEL_NAME, [tensor], outputs=outputs)
    assert result.get_response()["model_version"] == served.risk_version
    risk = result.as_numpy("risk")
    assert risk.shape == (4, 1) and np.all((risk >= 0) & (risk <= 1))
    np.testing.assert_allclose(risk[:, 0], served.risk.predict(rows.astype(float)), rtol=1e-6)


def test_tritonclient_failure_risk_refuses_a_missing_feature_with_the_reason(
    triton_client: triton.InferenceServerClient,
) -> None:
    rows = _feature_rows(2)
    rows[1, 2] = np.nan
    tensor = triton.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    with pytest.raises(InferenceServerException, match="every value must be finite"):
        triton_client.infer(MODEL_NAME, [tensor])


def test_failure_risk_infer_of_an_unknown_version_is_404(served: Served) -> None:
    response = httpx.post(
        f"http://{served.server.url}/v2/models/{MODEL_NAME}/versions/99/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [1, len(FEATURES)],
                    "data": [0.0] * len(FEATURES),
                }
            ]
        },
    )
    assert response.status_code == 404 and "99" in response.json()["error"]


def test_list_models_gives_each_served_models_live_infer_figures(
    triton_client: triton.InferenceServerClient, served: Served
) -> None:
    def figures() -> dict[str, dict[str, object]]:
        answer = httpx.get(f"http://{served.server.url}/api/v2/models").json()
        return {m["name"]: m for m in answer["models"]}

    before = figures()[MODEL_NAME]["live"]
    rows = _feature_rows(3)
    tensor = triton.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    for _ in range(2):
        triton_client.infer(MODEL_NAME, [tensor])
    wrong = triton.InferInput("wrong", [1, 1], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 1), np.float32))
    with pytest.raises(InferenceServerException, match="expected one input named 'features'"):
        triton_client.infer(MODEL_NAME, [wrong])
    listed = figures()[MODEL_NAME]
    live = listed["live"]
    assert listed["serving_version"] == served.risk_version and listed["served_over_oip"]
    assert live["requests"] - before["requests"] == 3  # type: ignore[index,operator]
    assert live["errors"] - before["errors"] == 1  # type: ignore[index,operator]
    assert live["rows"] - before["rows"] == 6  # type: ignore[index,operator]
    assert 0 < live["p50_ms"] <= live["p99_ms"]  # type: ignore[index,operator]
