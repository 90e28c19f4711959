"""The Open Inference Protocol with clients no one here wrote, over real HTTP: tritonclient (binary
tensor data on and off) and open-inference-openapi (generated from the protocol's OpenAPI)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from open_inference.openapi.client import OpenInferenceClient
from open_inference.openapi.errors import BadRequestError
from open_inference.openapi.types import InferenceRequest, RequestInput
from tritonclient.utils import InferenceServerException

from monitoring.samples import METRICS
from tests.support.live import LiveServer
from tests.support.models import SAMPLE, Registry

ROWS = np.array(
    [[SAMPLE[m] for m in METRICS], [10.0, 20.0, 30.0, 0.5, 100.0], [99.0, 1.0, 5.0, 50.0, 0.0]],
    dtype=np.float32,
)


@pytest.fixture
def triton_client(live_server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(
        url=live_server.url, connection_timeout=10, network_timeout=10
    )
    yield client
    client.close()


@pytest.fixture
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


@pytest.fixture
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
