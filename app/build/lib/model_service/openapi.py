"""The OpenAPI 3 document of the service, built from the loaded model's feature names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import __version__

_ERROR = {"$ref": "#/components/responses/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def build_openapi(features: Sequence[str], max_batch_rows: int, max_body_bytes: int) -> dict[str, Any]:
    instance = {
        "type": "object",
        "description": "One instance: every feature by name, each a finite number.",
        "properties": {name: {"type": "number"} for name in features},
        "required": list(features),
        "additionalProperties": False,
    }
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
        "openapi": "3.0.3",
        "info": {
            "title": "modelfleet model service",
            "version": __version__,
            "description": (
                "Predictions of an XGBoost model. Every error answers "
                '{"error": code, "detail": what to fix}. '
                f"Bodies are limited to {max_body_bytes} bytes and batches to {max_batch_rows} instances."
            ),
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict one instance or a batch",
                    "operationId": "predict",
                    "parameters": [{"$ref": "#/components/parameters/RequestId"}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Instance"},
                                        {"$ref": "#/components/schemas/Batch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Prediction(s).",
                            "headers": {"X-Request-ID": {"schema": {"type": "string"}}},
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Prediction"},
                                            {"$ref": "#/components/schemas/BatchPrediction"},
                                        ]
                                    }
                                }
                            },
                        },
                        **_error_responses(400, 413, 415, 422, 503),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness: 200 while the process runs",
                    "operationId": "health",
                    "responses": {"200": {"$ref": "#/components/responses/Status"}},
                }
            },
            "/ready": {
                "get": {
                    "summary": "Readiness: 200 once a model is loaded and warmed; 503 before that and while draining",
                    "operationId": "ready",
                    "responses": {"200": {"$ref": "#/components/responses/Status"}, **_error_responses(503)},
                }
            },
            "/model": {
                "get": {
                    "summary": "Metadata of the model being served",
                    "operationId": "model",
                    "responses": {
                        "200": {
                            "description": "metadata.json of the artifact, plus the runtime in use.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_error_responses(503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
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
                "Instance": instance,
                "Batch": {
                    "type": "object",
                    "required": ["instances"],
                    "additionalProperties": False,
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_batch_rows,
                            "items": {"$ref": "#/components/schemas/Instance"},
                        }
                    },
                },
                "Prediction": prediction,
                "BatchPrediction": {
                    "type": "object",
                    "required": ["predictions", "model_version"],
                    "properties": {
                        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                        "model_version": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
            },
            "responses": {
                "Error": {
                    "description": "An error.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
                "Status": {"description": "Status.", "content": {"application/json": {"schema": {"type": "object"}}}},
            },
        },
    }
