"""The request contract of the prediction routes, described once.

Every check a request goes through is one ``Rule`` below: the status and code it answers with, its
message, and where the OpenAPI document states it (JSON pointers). validation.py and v2.py raise
errors only through these rules, and openapi.py writes its schemas from the constants here, so the
checks and the document cannot drift apart: tests/test_contract.py sends a violation of every rule
and resolves every pointer in the served document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import ApiError

FLOAT32_MAX = float(np.finfo(np.float32).max)
JSON_MEDIA_TYPE = "application/json"

# Open Inference Protocol (v2): the one input tensor and the outputs this service answers with.
V2_INPUT = "input-0"
V2_DATATYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
V2_OUTPUTS = ("probabilities", "predicted_class")
V2_BINARY_HEADER = "Inference-Header-Content-Length"

_PREDICT = "/paths/~1predict/post"
_INFER = ("/paths/~1v2~1models~1{name}~1infer/post", "/paths/~1v2~1models~1{name}~1versions~1{version}~1infer/post")
_SCHEMAS = "/components/schemas"


def _infer(pointer: str) -> tuple[str, ...]:
    """The pointer in both infer operations (with and without a version in the path)."""
    return tuple(operation + pointer for operation in _INFER)


@dataclass(frozen=True)
class Rule:
    """One check of a request: what it answers when violated, and where the document states it."""

    status: int
    code: str
    detail: str  # str.format template
    documented_at: tuple[str, ...]

    def error(self, where: str = "", **values: object) -> ApiError:
        return ApiError(self.status, self.code, where + self.detail.format(**values))

    def matches(self, detail: str) -> bool:
        """Whether an answered detail is this rule's message (with any values and row prefix)."""
        parts = re.split(r"\{[^}]*\}", self.detail)
        return re.search(".*".join(map(re.escape, parts)) + "$", detail, re.S) is not None


# /predict
EMPTY_BODY = Rule(
    400, "invalid_json", "the request body is empty; send a JSON object", (f"{_PREDICT}/requestBody/required",)
)
INVALID_JSON = Rule(
    400,
    "invalid_json",
    "the body is not valid JSON ({reason}); NaN and Infinity are not JSON",
    (f"{_PREDICT}/requestBody/content/application~1json",),
)
MEDIA_TYPE = Rule(
    415,
    "unsupported_media_type",
    "send Content-Type: application/json (got {media})",
    (f"{_PREDICT}/requestBody/content/application~1json",),
)
BODY_TOO_LARGE = Rule(
    413,
    "payload_too_large",
    "the body is larger than the limit of {limit} bytes",
    (f"{_PREDICT}/requestBody/x-max-body-bytes", *_infer("/requestBody/x-max-body-bytes")),
)
NOT_AN_OBJECT = Rule(
    422,
    "invalid_body",
    "the body must be a JSON object (one instance or {{'instances': [...]}}), not a {kind}",
    (f"{_SCHEMAS}/Instance/type", f"{_SCHEMAS}/Batch/type"),
)
BATCH_KEYS = Rule(
    422, "invalid_body", "a batch body holds only the key 'instances'", (f"{_SCHEMAS}/Batch/additionalProperties",)
)
INSTANCES_NOT_ARRAY = Rule(
    422,
    "invalid_body",
    "'instances' must be an array, not a {kind}",
    (f"{_SCHEMAS}/Batch/properties/instances/type",),
)
EMPTY_BATCH = Rule(
    422,
    "empty_batch",
    "'instances' is empty; send 1 or more instances",
    (f"{_SCHEMAS}/Batch/properties/instances/minItems",),
)
BATCH_TOO_LARGE = Rule(
    413,
    "batch_too_large",
    "'instances' has {rows} rows; the limit is {limit}",
    (f"{_SCHEMAS}/Batch/properties/instances/maxItems",),
)
INSTANCE_NOT_AN_OBJECT = Rule(
    422, "invalid_instance", "must be a JSON object of feature name to number", (f"{_SCHEMAS}/Instance/type",)
)
FEATURES = Rule(
    422,
    "invalid_features",
    "{problems}",
    # A body without 'instances' is read as one instance, so Batch's required key ends up here too.
    (f"{_SCHEMAS}/Instance/required", f"{_SCHEMAS}/Instance/additionalProperties", f"{_SCHEMAS}/Batch/required"),
)
NOT_A_NUMBER = Rule(422, "invalid_value", "{name} must be a number, not {kind}", (f"{_SCHEMAS}/Feature/type",))
NOT_FINITE = Rule(
    422,
    "invalid_value",
    "a value is not finite or too large: numbers must fit a 32-bit float (about ±3.4e38)",
    (f"{_SCHEMAS}/Feature/minimum", f"{_SCHEMAS}/Feature/maximum"),
)

# Open Inference Protocol (v2) /infer
V2_NOT_FOUND = Rule(
    404,
    "model_not_found",
    "model '{name}' version '{version}' is not served here; this service serves '{served}' version '{served_version}'",
    (*_infer("/parameters/0/schema/enum"), f"{_INFER[1]}/parameters/3/schema/enum"),
)
V2_CONTENT_ENCODING = Rule(
    415,
    "unsupported_content_encoding",
    "compressed request bodies are not accepted (Content-Encoding: {encoding}); send them uncompressed",
    _infer("/parameters/1/schema/enum"),
)
V2_HEADER_LENGTH = Rule(
    400,
    "invalid_header_length",
    f"{V2_BINARY_HEADER} must be a whole number of bytes within the body ({{value}})",
    _infer("/parameters/2"),
)
V2_INVALID_JSON = Rule(
    400,
    "invalid_json",
    "the inference request is not valid JSON ({reason}); NaN and Infinity are not JSON",
    (*_infer("/requestBody/content/application~1json"), *_infer("/requestBody/required")),
)
V2_NOT_AN_OBJECT = Rule(
    422,
    "invalid_body",
    "the inference request must be a JSON object with 'inputs', not a {kind}",
    (f"{_SCHEMAS}/InferenceRequest/type", f"{_SCHEMAS}/InferenceRequest/required"),
)
V2_INPUTS = Rule(
    422,
    "invalid_inputs",
    f"'inputs' must be an array of exactly one tensor, '{V2_INPUT}' (got {{got}})",
    (
        f"{_SCHEMAS}/InferenceRequest/properties/inputs/minItems",
        f"{_SCHEMAS}/InferenceRequest/properties/inputs/maxItems",
    ),
)
V2_INPUT_NAME = Rule(
    422,
    "invalid_input",
    f"the input tensor must be named '{V2_INPUT}' (got {{got}})",
    (f"{_SCHEMAS}/RequestInput/properties/name/enum", f"{_SCHEMAS}/RequestInput/required"),
)
V2_DATATYPE = Rule(
    422,
    "invalid_datatype",
    f"datatype must be one of {', '.join(V2_DATATYPES)} (got {{got}})",
    (f"{_SCHEMAS}/RequestInput/properties/datatype/enum",),
)
V2_SHAPE = Rule(
    422,
    "invalid_shape",
    "shape must be [rows, {features}] with rows ≥ 1 (got {got})",
    (f"{_SCHEMAS}/RequestInput/properties/shape",),
)
V2_TOO_MANY_ROWS = Rule(
    413,
    "batch_too_large",
    "the input has {rows} rows; the limit is {limit}",
    (f"{_SCHEMAS}/RequestInput/properties/shape/x-max-rows",),
)
V2_DATA = Rule(
    422,
    "invalid_data",
    "'data' must be a flat or nested array of {expected} numbers in row-major order ({got})",
    (f"{_SCHEMAS}/RequestInput/properties/data",),
)
V2_BINARY_SIZE = Rule(
    422,
    "invalid_binary_data",
    "binary_data_size must be {expected} bytes (rows * features * {itemsize}) and the body must hold it ({got})",
    (f"{_SCHEMAS}/RequestInput/properties/parameters/properties/binary_data_size",),
)
V2_NOT_FINITE = Rule(
    422,
    "invalid_value",
    "a value is not finite or too large: numbers must fit a 32-bit float (about ±3.4e38)",
    (f"{_SCHEMAS}/Feature/minimum", f"{_SCHEMAS}/Feature/maximum"),
)
V2_OUTPUTS_INVALID = Rule(
    422,
    "invalid_outputs",
    f"'outputs' must be an array of objects naming {' or '.join(V2_OUTPUTS)} (got {{got}})",
    (
        f"{_SCHEMAS}/RequestOutput/properties/name/enum",
        f"{_SCHEMAS}/RequestOutput/required",
        f"{_SCHEMAS}/InferenceRequest/properties/outputs/minItems",
    ),
)
# Each output once: a request that lists one many times would make the answer as large as the client
# wishes, whatever the rows (a 646 KB request asked for gigabytes).
V2_OUTPUTS_DUPLICATE = Rule(
    400,
    "duplicate_outputs",
    "'outputs' names {name} more than once; ask for each output once",
    (
        f"{_SCHEMAS}/InferenceRequest/properties/outputs/uniqueItems",
        f"{_SCHEMAS}/InferenceRequest/properties/outputs/maxItems",
    ),
)

PREDICT_RULES = (
    EMPTY_BODY,
    INVALID_JSON,
    MEDIA_TYPE,
    BODY_TOO_LARGE,
    NOT_AN_OBJECT,
    BATCH_KEYS,
    INSTANCES_NOT_ARRAY,
    EMPTY_BATCH,
    BATCH_TOO_LARGE,
    INSTANCE_NOT_AN_OBJECT,
    FEATURES,
    NOT_A_NUMBER,
    NOT_FINITE,
)
V2_RULES = (
    V2_NOT_FOUND,
    V2_CONTENT_ENCODING,
    V2_HEADER_LENGTH,
    V2_INVALID_JSON,
    V2_NOT_AN_OBJECT,
    V2_INPUTS,
    V2_INPUT_NAME,
    V2_DATATYPE,
    V2_SHAPE,
    V2_TOO_MANY_ROWS,
    V2_DATA,
    V2_BINARY_SIZE,
    V2_NOT_FINITE,
    V2_OUTPUTS_INVALID,
    V2_OUTPUTS_DUPLICATE,
)
