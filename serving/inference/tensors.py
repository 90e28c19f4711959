"""The pure core of the protocol: an infer body (JSON, or JSON plus binary tensor data) to
checked arrays, and scores back to an answer body. No HTTP here: bytes and numbers in and out.

The binary tensor data extension: when `Inference-Header-Content-Length` is given, the body's
first that many bytes are the JSON header and the rest is the inputs' raw data, each input
claiming `parameters.binary_data_size` bytes in the order of `inputs` (little-endian, row-major).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"),
        ("UINT8", "<u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "<i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
    )
}
_NUMBERS = {int, float}


class TensorError(ValueError):
    """A request the protocol refuses; `status` is 400 (bad input) or 413 (too many rows)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model's metadata; -1 in `shape` is any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: frozenset[str] = frozenset()  # input datatypes taken besides `datatype`

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray  # flat, in the datatype's dtype


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool]  # requested output -> as binary data; empty: every output
    binary_output: bool  # parameters.binary_data_output


def parse_header_length(raw: str | None, body_length: int) -> int | None:
    """`Inference-Header-Content-Length` as an int within the body, or None when absent."""
    if raw is None:
        return None
    try:
        length = int(raw)
    except ValueError:
        raise TensorError(f"Inference-Header-Content-Length is not an integer: {raw!r}") from None
    if not 0 < length <= body_length:
        raise TensorError(
            f"Inference-Header-Content-Length {length} is outside the body of {body_length} bytes"
        )
    return length


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """The request's tensors; TensorError naming the first problem."""
    header, binary = (body, b"") if header_length is None else _split(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise TensorError(f"the request is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise TensorError('the request must be a JSON object with "inputs"')
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise TensorError('"inputs" must be a non-empty list of tensors')
    tensors, used = [], 0
    for index, item in enumerate(inputs):
        tensor, used = _tensor(item, index, binary, used)
        tensors.append(tensor)
    if used != len(binary):
        raise TensorError(
            f"{len(binary) - used} bytes of binary data follow the header but no input claims them"
        )
    binary_output = _parameter(document, "binary_data_output", "the request")
    return InferRequest(
        _request_id(document.get("id")),
        tensors,
        _requested_outputs(document.get("outputs")),
        binary_output,
    )


def _split(body: bytes, header_length: int) -> tuple[bytes, bytes]:
    return body[:header_length], body[header_length:]


def _request_id(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    raise TensorError('"id" must be a string')


def _tensor(item: Any, index: int, binary: bytes, used: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise TensorError(f"input {index} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError(f"input {index} has no name")
    datatype = item.get("datatype")
    if datatype not in DTYPES:
        raise TensorError(f"input {name!r}: datatype {datatype!r} is not supported")
    shape = _shape(item.get("shape"), name)
    count = math.prod(shape)
    dtype = DTYPES[datatype]
    size = _binary_size(item, name)
    if size is None:
        values = _json_values(item.get("data"), name, dtype, count)
    else:
        if size != count * dtype.itemsize:
            raise TensorError(
                f"input {name!r}: binary_data_size {size} does not match shape {list(shape)} of "
                f"{datatype} ({count * dtype.itemsize} bytes)"
            )
        if used + size > len(binary):
            raise TensorError(
                f"input {name!r}: {size} bytes of binary data announced, "
                f"{len(binary) - used} left in the body"
            )
        values = np.frombuffer(binary, dtype=dtype, count=count, offset=used)
        used += size
    return Tensor(name, datatype, shape, values), used


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if (
        not isinstance(raw, list)
        or not raw
        or any(type(d) is not int or d < 0 for d in raw)  # bool is not a dimension
    ):
        raise TensorError(f"input {name!r}: shape must be a non-empty list of sizes >= 0")
    return tuple(raw)


def _binary_size(item: dict[str, Any], name: str) -> int | None:
    parameters = item.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise TensorError(f"input {name!r}: parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise TensorError(f"input {name!r}: binary_data_size must be an integer >= 0")
    return size


def _json_values(data: Any, name: str, dtype: np.dtype[Any], count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise TensorError(f"input {name!r} has neither data nor binary_data_size")
    flat = _flatten(data) if data and isinstance(data[0], list) else data
    kinds = {type(v) for v in flat}
    allowed = {bool} if dtype.kind == "b" else _NUMBERS
    if kinds - allowed:
        wanted = "booleans" if dtype.kind == "b" else "numbers"
        raise TensorError(f"input {name!r}: data must hold {wanted} only")
    if len(flat) != count:
        raise TensorError(f"input {name!r}: {len(flat)} values do not fill its shape ({count})")
    try:
        with np.errstate(over="ignore"):  # an FP32 overflow becomes infinity, refused later
            return np.array(flat, dtype=dtype)
    except (OverflowError, ValueError):
        raise TensorError(f"input {name!r}: a value does not fit its datatype") from None


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major values of nested lists (the protocol allows both flat and nested data)."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _requested_outputs(raw: Any) -> dict[str, bool]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise TensorError('"outputs" must be a list')
    requested: dict[str, bool] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise TensorError(f"output {index} must be an object with a name")
        requested[item["name"]] = _parameter(item, "binary_data", f"output {item['name']!r}")
    return requested


def _parameter(item: dict[str, Any], key: str, where: str) -> bool:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise TensorError(f"{where}: parameters must be an object")
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise TensorError(f"{where}: {key} must be true or false")
    return value


def input_matrix(request: InferRequest, spec: TensorSpec, max_rows: int) -> np.ndarray:
    """The one input a model takes as a finite float64 (rows, columns) matrix."""
    if len(request.inputs) != 1 or request.inputs[0].name != spec.name:
        names = [t.name for t in request.inputs]
        raise TensorError(f"expected one input named {spec.name!r}, got {names}")
    tensor = request.inputs[0]
    if tensor.datatype != spec.datatype and tensor.datatype not in spec.accepts:
        taken = ", ".join(sorted({spec.datatype, *spec.accepts}))
        raise TensorError(f"input {spec.name!r}: datatype {tensor.datatype} is not {taken}")
    if not _fits(tensor.shape, spec.shape) or tensor.shape[0] == 0:
        raise TensorError(
            f"input {spec.name!r}: shape {list(tensor.shape)} does not match {list(spec.shape)}"
        )
    if tensor.shape[0] > max_rows:
        raise TensorError(f"{tensor.shape[0]} rows exceed the limit of {max_rows}", 413)
    rows = tensor.values.astype(np.float64).reshape(tensor.shape)
    if not np.all(np.isfinite(rows)):
        raise TensorError(f"input {spec.name!r}: every value must be finite (no NaN or infinity)")
    return rows


def _fits(shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    return len(shape) == len(wanted) and all(
        w in (-1, d) for d, w in zip(shape, wanted, strict=True)
    )


def check_outputs(request: InferRequest, spec: TensorSpec) -> None:
    unknown = sorted(set(request.outputs) - {spec.name})
    if unknown:
        raise TensorError(f"unknown output {unknown[0]!r}; the model's output is {spec.name!r}")


def encode_response(
    request: InferRequest, spec: TensorSpec, model: str, version: str, outputs: np.ndarray
) -> tuple[bytes, int | None]:
    """The answer body, and the JSON header's length when binary data follows it."""
    values = np.ascontiguousarray(outputs, dtype=DTYPES[spec.datatype])
    tensor: dict[str, Any] = {
        "name": spec.name,
        "datatype": spec.datatype,
        "shape": list(values.shape),
    }
    binary = request.outputs.get(spec.name, request.binary_output)
    raw = b""
    if binary:
        raw = values.tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = values.ravel().tolist()
    answer: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": [tensor]}
    if request.id is not None:
        answer["id"] = request.id
    header = orjson.dumps(answer)
    return (header + raw, len(header)) if binary else (header, None)
