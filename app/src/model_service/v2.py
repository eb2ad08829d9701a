"""The Open Inference Protocol (v2, as KServe, MLServer and Triton speak it) over REST.

One input tensor, ``input-0``, FP32 (or FP64) of shape [rows, features] in row-major order, either as
JSON ``data`` or in the binary tensor data extension: the JSON header is the first
``Inference-Header-Content-Length`` bytes of the body and the raw little-endian tensor follows it.
Outputs are ``probabilities`` (FP32 [rows, classes]) and, when asked for, ``predicted_class`` (INT64 when
every class label is an integer, otherwise BYTES), each in JSON or binary as the request says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from . import __version__
from . import contract as c
from .validation import NUMBER_TYPES, finite_float32, json_type

if TYPE_CHECKING:
    from .artifact import LoadedModel


@dataclass(frozen=True)
class InferRequest:
    rows: np.ndarray
    id: str | None
    outputs: tuple[tuple[str, bool], ...]  # (name, as binary)


def server_metadata() -> dict[str, Any]:
    return {"name": "modelfleet-model-service", "version": __version__, "extensions": ["binary_tensor_data"]}


def class_datatype(labels: list[Any]) -> str:
    return "INT64" if all(type(label) is int for label in labels) else "BYTES"


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "xgboost",
        "inputs": [{"name": c.V2_INPUT, "datatype": "FP32", "shape": [-1, len(model.features)]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.labels)]},
            {"name": "predicted_class", "datatype": class_datatype(model.labels), "shape": [-1]},
        ],
    }


def check_model(model: LoadedModel, name: str, version: str | None) -> None:
    if name != model.name or (version is not None and version != model.version):
        raise c.V2_NOT_FOUND.error(name=name, version=version or "any", served=model.name, served_version=model.version)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise c.V2_HEADER_LENGTH.error(value=f"{header_length!r} for a body of {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def _shape(tensor: dict[str, Any], features: int, max_rows: int) -> int:
    shape = tensor.get("shape")
    if not (
        type(shape) is list
        and len(shape) == 2
        and all(type(n) is int for n in shape)
        and shape[0] >= 1
        and shape[1] == features
    ):
        raise c.V2_SHAPE.error(features=features, got=orjson.dumps(shape).decode())
    if shape[0] > max_rows:
        raise c.V2_TOO_MANY_ROWS.error(rows=shape[0], limit=max_rows)
    return shape[0]


def _json_data(data: Any, expected: int) -> np.ndarray:
    if type(data) is not list:
        raise c.V2_DATA.error(expected=expected, got="no array" if data is None else f"a {json_type(data)}")
    flat = data
    if data and type(data[0]) is list:
        if not all(type(row) is list for row in data):
            raise c.V2_DATA.error(expected=expected, got="rows of mixed kinds")
        flat = [value for row in data for value in row]
    if not NUMBER_TYPES.issuperset(map(type, flat)):
        bad = next(value for value in flat if type(value) not in NUMBER_TYPES)
        raise c.V2_DATA.error(expected=expected, got=f"it holds a {json_type(bad)}")
    if len(flat) != expected:
        raise c.V2_DATA.error(expected=expected, got=f"got {len(flat)}")
    return np.array(flat, dtype=np.float64)


def _outputs(request: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    parameters = request.get("parameters")
    binary_default = type(parameters) is dict and parameters.get("binary_data_output") is True
    asked = request.get("outputs")
    if asked is None:
        return (("probabilities", binary_default),)
    if type(asked) is not list or not asked:
        raise c.V2_OUTPUTS_INVALID.error(got=orjson.dumps(asked).decode())
    outputs: list[tuple[str, bool]] = []
    for output in asked:
        if type(output) is not dict or output.get("name") not in c.V2_OUTPUTS:
            raise c.V2_OUTPUTS_INVALID.error(got=orjson.dumps(output).decode())
        if any(name == output["name"] for name, _ in outputs):
            raise c.V2_OUTPUTS_DUPLICATE.error(name=output["name"])
        parameters = output.get("parameters")
        binary = parameters.get("binary_data", binary_default) if type(parameters) is dict else binary_default
        outputs.append((output["name"], binary is True))
    return tuple(outputs)


def parse_infer(body: bytes, header_length: str | None, features: int, max_rows: int) -> InferRequest:
    """The rows, id and requested outputs of an inference request, or the rule it breaks."""
    head, binary = _split(body, header_length)
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise c.V2_INVALID_JSON.error(reason=exc) from exc
    if type(request) is not dict or "inputs" not in request:
        raise c.V2_NOT_AN_OBJECT.error(kind="object without 'inputs'" if type(request) is dict else json_type(request))
    inputs = request["inputs"]
    if type(inputs) is not list or len(inputs) != 1 or type(inputs[0]) is not dict:
        got = f"{len(inputs)} tensors" if type(inputs) is list else f"a {json_type(inputs)}"
        raise c.V2_INPUTS.error(got=got)
    tensor = inputs[0]
    if tensor.get("name") != c.V2_INPUT:
        raise c.V2_INPUT_NAME.error(got=orjson.dumps(tensor.get("name")).decode())
    dtype = c.V2_DATATYPES.get(tensor.get("datatype"))  # type: ignore[arg-type]
    if dtype is None:
        raise c.V2_DATATYPE.error(got=orjson.dumps(tensor.get("datatype")).decode())
    count = _shape(tensor, features, max_rows)
    expected = count * features
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if type(parameters) is dict else None
    if size is not None or len(binary):
        want = expected * dtype.itemsize
        if size != want or len(binary) != want:
            got = f"binary_data_size {size}, {len(binary)} bytes after the JSON header"
            raise c.V2_BINARY_SIZE.error(expected=want, itemsize=dtype.itemsize, got=got)
        matrix = np.frombuffer(binary, dtype=dtype)
    else:
        matrix = _json_data(tensor.get("data"), expected)
    rows = finite_float32(matrix.reshape(count, features), c.V2_NOT_FINITE)
    request_id = request.get("id")
    return InferRequest(rows, request_id if type(request_id) is str else None, _outputs(request))


def _classes(model: LoadedModel, probabilities: np.ndarray) -> tuple[str, Any]:
    best = probabilities.argmax(axis=1)
    if class_datatype(model.labels) == "INT64":
        return "INT64", np.asarray(model.labels, dtype="<i8")[best]
    return "BYTES", [model.label_keys[i] for i in best]


def infer_response(model: LoadedModel, request: InferRequest, probabilities: np.ndarray) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    outputs, blobs = [], []
    for name, binary in request.outputs:
        if name == "probabilities":
            datatype, values = "FP32", probabilities.astype("<f4")
        else:
            datatype, values = _classes(model, probabilities)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(np.shape(values))}
        if binary:
            raw = values.tobytes() if datatype != "BYTES" else _bytes_tensor(values)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = values.ravel() if datatype != "BYTES" else values
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    head = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _bytes_tensor(values: list[str]) -> bytes:
    parts = []
    for value in values:
        encoded = value.encode()
        parts.append(len(encoded).to_bytes(4, "little") + encoded)
    return b"".join(parts)
