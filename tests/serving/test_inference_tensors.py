"""The protocol's pure core: infer bodies to checked matrices and scores to answers, no HTTP."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from serving.inference.tensors import (
    TensorError,
    TensorSpec,
    check_outputs,
    decode_request,
    encode_response,
    input_matrix,
    parse_header_length,
)

SPEC = TensorSpec("metrics", "FP32", (-1, 5), frozenset({"FP64"}))
OUT = TensorSpec("performance_score", "FP32", (-1, 1))
ROWS = [[85.0, 70.0, 200.0, 3.0, 2000.0], [10.0, 20.0, 30.0, 0.5, 100.0]]


def _json(
    data: object, datatype: str = "FP32", shape: list[int] | None = None, **extra: object
) -> bytes:
    tensor = {"name": "metrics", "datatype": datatype, "shape": shape or [2, 5], "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def _binary(
    values: np.ndarray, shape: list[int], size: int | None = None, **extra: object
) -> tuple[bytes, int]:
    raw = values.tobytes()
    tensor = {
        "name": "metrics",
        "datatype": "FP32" if values.dtype == np.float32 else "FP64",
        "shape": shape,
        "parameters": {"binary_data_size": len(raw) if size is None else size},
    }
    header = orjson.dumps({"inputs": [tensor], **extra})
    return header + raw, len(header)


def test_decode_flat_json_data_gives_row_major_matrix() -> None:
    request = decode_request(_json([v for row in ROWS for v in row]), None)
    assert input_matrix(request, SPEC, 100).tolist() == ROWS


def test_decode_nested_json_data_gives_the_same_matrix() -> None:
    request = decode_request(_json(ROWS), None)
    assert input_matrix(request, SPEC, 100).tolist() == ROWS


def test_decode_binary_fp32_data_gives_the_matrix() -> None:
    body, length = _binary(np.array(ROWS, dtype="<f4"), [2, 5])
    request = decode_request(body, length)
    assert input_matrix(request, SPEC, 100).tolist() == ROWS


def test_decode_binary_fp64_data_is_accepted() -> None:
    body, length = _binary(np.array(ROWS, dtype="<f8"), [2, 5])
    assert input_matrix(decode_request(body, length), SPEC, 100).tolist() == ROWS


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (orjson.dumps({"inputs": []}), "non-empty list"),
        (_json(ROWS, datatype="STRING"), "datatype 'STRING' is not supported"),
        (_json(ROWS, shape=[2, -5]), "shape must be"),
        (_json([1.0, 2.0]), "2 values do not fill its shape (10)"),
        (_json([["a"] * 5] * 2), "numbers only"),
        (
            orjson.dumps({"inputs": [{"name": "metrics", "datatype": "FP32", "shape": [1, 5]}]}),
            "neither data",
        ),
    ],
)
def test_decode_malformed_request_names_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(TensorError, match=None) as caught:
        decode_request(body, None)
    assert reason in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_json(ROWS, datatype="INT32"), "datatype INT32 is not FP32, FP64"),
        (_json([1.0] * 8, shape=[2, 4]), "shape [2, 4] does not match [-1, 5]"),
        (_json([1.0] * 10, shape=[10]), "shape [10] does not match"),
        (_json([[1e39] * 5] * 2), "finite"),  # too large for FP32: infinity
    ],
)
def test_input_matrix_refuses_what_the_model_does_not_take(body: bytes, reason: str) -> None:
    with pytest.raises(TensorError) as caught:
        input_matrix(decode_request(body, None), SPEC, 100)
    assert reason in str(caught.value)


def test_input_matrix_wrong_tensor_name_is_refused() -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 5], "data": [1] * 5}]}
    )
    with pytest.raises(TensorError, match="expected one input named 'metrics'"):
        input_matrix(decode_request(body, None), SPEC, 100)


def test_input_matrix_binary_nan_is_refused() -> None:
    body, length = _binary(np.array([[np.nan, 1, 1, 1, 1]], dtype="<f4"), [1, 5])
    with pytest.raises(TensorError, match="finite"):
        input_matrix(decode_request(body, length), SPEC, 100)


def test_input_matrix_too_many_rows_is_413() -> None:
    with pytest.raises(TensorError) as caught:
        input_matrix(decode_request(_json(ROWS), None), SPEC, 1)
    assert caught.value.status == 413


def test_decode_binary_size_not_matching_shape_is_refused() -> None:
    body, length = _binary(np.array(ROWS, dtype="<f4"), [2, 5], size=36)
    with pytest.raises(TensorError, match="binary_data_size 36 does not match"):
        decode_request(body, length)


def test_decode_binary_data_shorter_than_announced_is_refused() -> None:
    body, length = _binary(np.array(ROWS, dtype="<f4"), [2, 5])
    with pytest.raises(TensorError, match="40 bytes of binary data announced, 36 left"):
        decode_request(body[:-4], length)


def test_decode_unclaimed_binary_data_is_refused() -> None:
    body, length = _binary(np.array(ROWS, dtype="<f4"), [2, 5])
    with pytest.raises(TensorError, match="4 bytes of binary data follow the header"):
        decode_request(body + b"\0\0\0\0", length)


@pytest.mark.parametrize("raw", ["abc", "0", "100000"])
def test_parse_header_length_outside_the_body_is_refused(raw: str) -> None:
    with pytest.raises(TensorError, match="Inference-Header-Content-Length"):
        parse_header_length(raw, 50)


def test_check_outputs_unknown_output_is_refused() -> None:
    request = decode_request(_json(ROWS, outputs=[{"name": "nope"}]), None)
    with pytest.raises(TensorError, match="unknown output 'nope'"):
        check_outputs(request, OUT)


def test_encode_json_response_holds_data_and_no_header_length() -> None:
    request = decode_request(_json(ROWS, id="r1"), None)
    body, length = encode_response(request, OUT, "neuroweaver", "3", np.array([[0.25], [0.5]]))
    assert length is None
    answer = orjson.loads(body)
    assert answer["id"] == "r1" and answer["model_version"] == "3"
    assert answer["outputs"] == [
        {"name": "performance_score", "datatype": "FP32", "shape": [2, 1], "data": [0.25, 0.5]}
    ]


def test_encode_binary_response_when_every_output_is_binary() -> None:
    request = decode_request(_json(ROWS, parameters={"binary_data_output": True}), None)
    body, length = encode_response(request, OUT, "neuroweaver", "3", np.array([[0.25], [0.5]]))
    assert length is not None
    header = orjson.loads(body[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(body[length:], dtype="<f4").tolist() == [0.25, 0.5]


def test_encode_per_output_binary_flag_overrides_the_request_flag() -> None:
    outputs = [{"name": "performance_score", "parameters": {"binary_data": False}}]
    request = decode_request(
        _json(ROWS, outputs=outputs, parameters={"binary_data_output": True}), None
    )
    body, length = encode_response(request, OUT, "neuroweaver", "3", np.array([[0.25], [0.5]]))
    assert length is None and orjson.loads(body)["outputs"][0]["data"] == [0.25, 0.5]
