"""The OpenAPI 3 document of the service, written from the loaded model and contract.py's rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import __version__
from . import contract as c

_ERROR = {"$ref": "#/components/responses/Error"}
_V2_ERROR = {"$ref": "#/components/responses/V2Error"}


def _json(schema: dict[str, Any], description: str = "OK.") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int, v2: bool = False) -> dict[str, Any]:
    return {str(code): _V2_ERROR if v2 else _ERROR for code in codes}


def _get(
    summary: str, operation: str, ok: dict[str, Any], *errors: int, v2: bool = False, parameters: list | None = None
) -> dict[str, Any]:
    get: dict[str, Any] = {"summary": summary, "operationId": operation}
    if parameters:
        get["parameters"] = parameters
    return {"get": {**get, "responses": {"200": ok, **_errors(*errors, v2=v2)}}}


def _predict(max_body_bytes: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Predict one instance or a batch",
            "operationId": "predict",
            "parameters": [{"$ref": "#/components/parameters/RequestId"}],
            "requestBody": {
                "required": True,
                "x-max-body-bytes": max_body_bytes,
                "content": {c.JSON_MEDIA_TYPE: {"schema": {"oneOf": [_ref("Instance"), _ref("Batch")]}}},
            },
            "responses": {
                "200": {
                    **_json({"oneOf": [_ref("Prediction"), _ref("BatchPrediction")]}, "Prediction(s)."),
                    "headers": {"X-Request-ID": {"schema": {"type": "string"}}},
                },
                **_errors(400, 413, 415, 422, 503),
            },
        }
    }


def _v2_path_parameters(model_name: str, version: str | None, with_version: bool) -> list[dict[str, Any]]:
    name = {"type": "string", "enum": [model_name]} if model_name else {"type": "string"}
    parameters = [{"name": "name", "in": "path", "required": True, "schema": name}]
    if with_version:
        schema = {"type": "string", "enum": [version]} if version else {"type": "string"}
        parameters.append({"name": "version", "in": "path", "required": True, "schema": schema})
    return parameters


def _infer(model_name: str, version: str | None, with_version: bool, max_body_bytes: int) -> dict[str, Any]:
    path_parameters = _v2_path_parameters(model_name, version, with_version)
    headers = [
        {
            "name": "Content-Encoding",
            "in": "header",
            "required": False,
            "description": "Request bodies are not compressed.",
            "schema": {"type": "string", "enum": ["identity"]},
        },
        {
            "name": c.V2_BINARY_HEADER,
            "in": "header",
            "required": False,
            "description": (
                "Binary tensor data extension: the length of the JSON header at the start of the body; the raw "
                "little-endian tensor follows it (binary_data_size of the input says how many bytes)."
            ),
            "schema": {"type": "integer", "minimum": 0},
        },
    ]
    body_schema = _ref("InferenceRequest")
    return {
        "post": {
            "summary": "Open Inference Protocol (v2): class probabilities and, when asked, the predicted class",
            "operationId": "v2_infer_version" if with_version else "v2_infer",
            # The name parameter stays first: contract.V2_NOT_FOUND points at it.
            "parameters": [path_parameters[0], *headers, *path_parameters[1:]],
            "requestBody": {
                "required": True,
                "x-max-body-bytes": max_body_bytes,
                "description": (
                    f"An InferenceRequest in JSON; with {c.V2_BINARY_HEADER}, that JSON header then the raw tensor."
                ),
                "content": {
                    c.JSON_MEDIA_TYPE: {"schema": body_schema},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "The requested outputs; binary ones follow the JSON header.",
                    "content": {
                        c.JSON_MEDIA_TYPE: {"schema": _ref("InferenceResponse")},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **_errors(400, 404, 413, 415, 422, 503, v2=True),
            },
        }
    }


def _v2_paths(model_name: str, version: str | None, max_body_bytes: int) -> dict[str, Any]:
    model_meta = _json(_ref("ModelMetadata"), "Model metadata: the input and output tensors.")
    ready = _json({"type": "object"}, "The model is ready.")
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata and extensions", "v2_server", _json({"type": "object"})),
        "/v2/health/live": _get("Liveness (Open Inference Protocol)", "v2_live", _json({"type": "object"})),
        "/v2/health/ready": _get(
            "Readiness (Open Inference Protocol)", "v2_ready", _json({"type": "object"}), 503, v2=True
        ),
    }
    for suffix, with_version in (("", False), ("/versions/{version}", True)):
        base = f"/v2/models/{{name}}{suffix}"
        tag = "_version" if with_version else ""
        parameters = _v2_path_parameters(model_name, version, with_version)
        paths[base] = _get("Model metadata", f"v2_model{tag}", model_meta, 404, 503, v2=True, parameters=parameters)
        paths[f"{base}/ready"] = _get(
            "Model readiness", f"v2_model_ready{tag}", ready, 404, 503, v2=True, parameters=parameters
        )
        paths[f"{base}/infer"] = _infer(model_name, version, with_version, max_body_bytes)
    return paths


def _operational_paths() -> dict[str, Any]:
    status = {"$ref": "#/components/responses/Status"}
    return {
        "/health": _get("Liveness: 200 while the process runs", "health", status),
        "/ready": _get(
            "Readiness: 200 once a model is loaded and warmed; 503 before that and while draining", "ready", status, 503
        ),
        "/model": _get(
            "What a client needs to call the model being served",
            "model",
            _json(
                {"type": "object", "required": ["name", "version", "features", "classes", "runtime"]},
                "The model's name, version, features in order, classes and the runtime in use.",
            ),
            503,
        ),
        "/model/profile": _get(
            "The served model's training profile (served to the metrics listener's allow-list only)",
            "model_profile",
            _json(
                {"type": "object"},
                "metadata.json of the artifact (with the training profile), the runtime and the drift signals.",
            ),
            503,
        ),
        "/metrics": _get(
            "Prometheus metrics",
            "metrics",
            {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
        ),
        "/openapi.json": _get("This document", "openapi", _json({"type": "object"}, "OpenAPI 3 document.")),
    }


def _predict_schemas(features: Sequence[str], max_batch_rows: int) -> dict[str, Any]:
    prediction = {
        "type": "object",
        "required": ["predicted_class", "probabilities", "confidence", "model_version"],
        "properties": {
            "predicted_class": {
                "description": "The most probable class label.",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            },
            "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "model_version": {"type": "string"},
        },
    }
    return {
        "Feature": {
            "type": "number",
            "description": "A finite number that fits a 32-bit float.",
            "minimum": -c.FLOAT32_MAX,
            "maximum": c.FLOAT32_MAX,
        },
        "Instance": {
            "type": "object",
            "description": "One instance: every feature by name, each a finite number.",
            "properties": {name: _ref("Feature") for name in features},
            "required": list(features),
            "additionalProperties": False,
        },
        "Batch": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {"type": "array", "minItems": 1, "maxItems": max_batch_rows, "items": _ref("Instance")}
            },
        },
        "Prediction": prediction,
        "BatchPrediction": {
            "type": "object",
            "required": ["predictions", "model_version"],
            "properties": {
                "predictions": {"type": "array", "items": _ref("Prediction")},
                "model_version": {"type": "string"},
            },
        },
    }


def _v2_schemas(features: Sequence[str], max_batch_rows: int) -> dict[str, Any]:
    tensor_meta = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array"}},
    }
    output_names = {"type": "string", "enum": list(c.V2_OUTPUTS)}
    return {
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string", "description": "Echoed in the response."},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": {"type": "boolean", "default": False}},
                },
                "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": _ref("RequestInput")},
                "outputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": len(c.V2_OUTPUTS),
                    "uniqueItems": True,
                    "items": _ref("RequestOutput"),
                    "description": "Outputs to answer with; probabilities alone when absent.",
                },
            },
        },
        "RequestInput": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "description": "The features in the order of ModelMetadata's input, one row per instance.",
            "properties": {
                "name": {"type": "string", "enum": [c.V2_INPUT]},
                "datatype": {"type": "string", "enum": list(c.V2_DATATYPES)},
                "shape": {
                    "type": "array",
                    "description": f"[rows, {len(features)}]",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 2,
                    "maxItems": 2,
                    "x-max-rows": max_batch_rows,
                },
                "data": {
                    "type": "array",
                    "description": "rows * features numbers in row-major order, flat or one array per row.",
                    "items": {"oneOf": [_ref("Feature"), {"type": "array", "items": _ref("Feature")}]},
                },
                "parameters": {
                    "type": "object",
                    "properties": {
                        "binary_data_size": {
                            "type": "integer",
                            "description": "Bytes of the raw tensor after the JSON header: rows * features * 4 (FP32).",
                        }
                    },
                },
            },
        },
        "RequestOutput": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": output_names,
                "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {
                    "type": "array",
                    "items": {**tensor_meta, "properties": {**tensor_meta["properties"], "name": output_names}},
                },
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": tensor_meta},
                "outputs": {"type": "array", "items": tensor_meta},
            },
        },
    }


def build_openapi(
    features: Sequence[str],
    max_batch_rows: int,
    max_body_bytes: int,
    model_name: str = "",
    model_version: str | None = None,
) -> dict[str, Any]:
    error_body = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelfleet model service",
            "version": __version__,
            "description": (
                "Predictions of an XGBoost model, in the service's own API (/predict) and in the Open Inference "
                'Protocol (/v2). Errors answer {"error": code, "detail": what to fix}, and {"error": message} on '
                f"/v2 paths. Bodies are limited to {max_body_bytes} bytes and batches to {max_batch_rows} rows."
            ),
        },
        "paths": {
            "/predict": _predict(max_body_bytes),
            **_operational_paths(),
            **_v2_paths(model_name, model_version, max_body_bytes),
        },
        "components": {
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": "Echoed back; generated when absent or not 1-128 characters of [A-Za-z0-9._:-].",
                    "schema": {"type": "string", "maxLength": 128},
                }
            },
            "schemas": {
                **_predict_schemas(features, max_batch_rows),
                **_v2_schemas(features, max_batch_rows),
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
                "V2Error": error_body,
            },
            "responses": {
                "Error": _json(_ref("Error"), "An error."),
                "V2Error": _json(_ref("V2Error"), "An error, in the Open Inference Protocol's shape."),
                "Status": _json({"type": "object"}, "Status."),
            },
        },
    }
