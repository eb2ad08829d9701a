"""Turning a request body into a float32 matrix, or an ApiError that says exactly what to fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from .errors import ApiError

_MAX_NAMES_IN_DETAIL = 10
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_DETAIL])
    more = len(names) - _MAX_NAMES_IN_DETAIL
    return shown + (f" and {more} more" if more > 0 else "")


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", f"send Content-Type: application/json (got {media or 'none'})")


def parse_json(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"the body is not valid JSON ({exc}); NaN and Infinity are not JSON"
        ) from exc


def _row(instance: Any, features: Sequence[str], feature_set: frozenset[str], where: str) -> list[float]:
    if not isinstance(instance, dict):
        raise ApiError(422, "invalid_instance", f"{where}must be a JSON object of feature name to number")
    if len(instance) != len(features) or not feature_set.issuperset(instance):
        missing = [name for name in features if name not in instance]
        unknown = sorted(str(key) for key in instance if key not in feature_set)
        parts = []
        if missing:
            parts.append(f"missing features: {_names(missing)}")
        if unknown:
            parts.append(f"unknown features: {_names(unknown)}")
        raise ApiError(422, "invalid_features", f"{where}{'; '.join(parts)}")
    row = []
    for name in features:
        value = instance[name]
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise ApiError(422, "invalid_value", f"{where}{name} must be a finite number")
        elif kind is not int:
            shown = "a boolean" if kind is bool else f"a {_json_type(value)}"
            raise ApiError(422, "invalid_value", f"{where}{name} must be a number, not {shown}")
        row.append(value)
    return row


def _json_type(value: Any) -> str:
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def parse_instances(payload: Any, features: Sequence[str], max_rows: int) -> tuple[np.ndarray, bool]:
    """Return (rows as float32 of shape (n, features), whether the body was a batch)."""
    feature_set = frozenset(features)
    if not isinstance(payload, dict):
        raise ApiError(
            422,
            "invalid_body",
            f"the body must be a JSON object (one instance or {{'instances': [...]}}), not a {_json_type(payload)}",
        )
    if "instances" in payload:
        if len(payload) != 1:
            raise ApiError(422, "invalid_body", "a batch body holds only the key 'instances'")
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise ApiError(422, "invalid_body", f"'instances' must be an array, not a {_json_type(instances)}")
        if not instances:
            raise ApiError(422, "empty_batch", "'instances' is empty; send 1 or more instances")
        if len(instances) > max_rows:
            raise ApiError(413, "batch_too_large", f"'instances' has {len(instances)} rows; the limit is {max_rows}")
        rows = [_row(item, features, feature_set, f"instances[{i}]: ") for i, item in enumerate(instances)]
        batch = True
    else:
        rows = [_row(payload, features, feature_set, "")]
        batch = False
    matrix = np.asarray(rows, dtype=np.float64)
    if np.abs(matrix).max() > _FLOAT32_MAX:
        raise ApiError(422, "invalid_value", "a value is too large: numbers must fit a 32-bit float (about ±3.4e38)")
    return matrix.astype(np.float32), batch
