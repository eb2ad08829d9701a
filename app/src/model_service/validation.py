"""Turning a /predict body into a float32 matrix, or an ApiError that says exactly what to fix.

The rules are contract.py's. A valid body is decoded by msgspec straight into structs of the model's
features (types, required and unknown names checked in C, no dict per instance); a body it refuses is
parsed again with orjson and read by ``RowReader``, whose checks name the rule, the row and the feature
that is wrong. Either way the same rules hold: the fast path only accepts what the slow path accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import orjson

from . import contract as c

_MAX_NAMES_IN_DETAIL = 10
NUMBER_TYPES = frozenset((int, float))


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_DETAIL])
    more = len(names) - _MAX_NAMES_IN_DETAIL
    return shown + (f" and {more} more" if more > 0 else "")


def json_type(value: Any) -> str:
    return {str: "string", list: "array", dict: "object", type(None): "null", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != c.JSON_MEDIA_TYPE:
        raise c.MEDIA_TYPE.error(media=media or "none")


def parse_json(body: bytes) -> Any:
    if not body:
        raise c.EMPTY_BODY.error()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise c.INVALID_JSON.error(reason=exc) from exc


class RowReader:
    """Reads instances (JSON objects of feature name to number) of one model's features."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        fields = [f"f{i}" for i in range(len(self.features))]
        instance = msgspec.defstruct(
            "Instance",
            [(field, float) for field in fields],
            rename=dict(zip(fields, self.features, strict=True)),
            forbid_unknown_fields=True,
            gc=False,
        )
        batch = msgspec.defstruct("Batch", [("instances", list[instance])], forbid_unknown_fields=True, gc=False)
        self._decode_instance = msgspec.json.Decoder(instance).decode
        self._decode_batch = msgspec.json.Decoder(batch).decode
        self._values = attrgetter(*fields) if len(fields) > 1 else lambda s: (s.f0,)
        self._set = frozenset(self.features)
        self._get = itemgetter(*self.features) if len(self.features) > 1 else lambda d: (d[self.features[0]],)

    def row(self, instance: Any, where: str = "") -> tuple[Any, ...]:
        if type(instance) is not dict:
            raise c.INSTANCE_NOT_AN_OBJECT.error(where)
        if len(instance) != len(self.features) or not self._set.issuperset(instance):
            raise self._feature_error(instance, where)
        values = self._get(instance)
        if not NUMBER_TYPES.issuperset(map(type, values)):
            raise self._value_error(values, where)
        return values

    def _feature_error(self, instance: dict[str, Any], where: str) -> Exception:
        missing = [name for name in self.features if name not in instance]
        unknown = sorted(str(key) for key in instance if key not in self._set)
        parts = []
        if missing:
            parts.append(f"missing features: {_names(missing)}")
        if unknown:
            parts.append(f"unknown features: {_names(unknown)}")
        error = c.FEATURES.error(where, problems="; ".join(parts))
        error.missing = missing
        return error

    def _value_error(self, values: Sequence[Any], where: str) -> Exception:
        for name, value in zip(self.features, values, strict=True):
            if type(value) not in NUMBER_TYPES:
                kind = json_type(value)
                return c.NOT_A_NUMBER.error(where, name=name, kind=f"a {kind}")
        raise AssertionError("unreachable: every value is a number")

    def _rows(self, instances: list[Any]) -> list[tuple[Any, ...]]:
        """Every instance's values in feature order, checked batch-wide with C-level passes; when one is
        wrong, the rows are read one by one to say which and why."""
        try:
            rows = list(map(self._get, instances))
        except (KeyError, TypeError, IndexError):
            rows = None
        width = {len(self.features)}
        if (
            rows is None
            or set(map(type, instances)) != {dict}
            or set(map(len, instances)) != width
            or not NUMBER_TYPES.issuperset(map(type, chain.from_iterable(rows)))
        ):
            row = self.row
            rows = [row(item, f"instances[{i}]: ") for i, item in enumerate(instances)]
        return rows

    def read(self, body: bytes, max_rows: int) -> tuple[np.ndarray, bool]:
        """(rows as float32 of shape (n, features), whether the body was a batch) of a /predict body."""
        try:
            if b'"instances"' in body:
                rows, batch = list(map(self._values, self._decode_batch(body).instances)), True
            else:
                rows, batch = [self._values(self._decode_instance(body))], False
        except msgspec.DecodeError:  # ValidationError included
            rows = []
        if not 0 < len(rows) <= max_rows:
            return self.matrix(parse_json(body), max_rows)
        return finite_float32(np.array(rows, dtype=np.float64), c.NOT_FINITE), batch

    def matrix(self, payload: Any, max_rows: int) -> tuple[np.ndarray, bool]:
        """Return (rows as float32 of shape (n, features), whether the body was a batch)."""
        if type(payload) is not dict:
            raise c.NOT_AN_OBJECT.error(kind=json_type(payload))
        if "instances" in payload:
            if len(payload) != 1:
                raise c.BATCH_KEYS.error()
            instances = payload["instances"]
            if type(instances) is not list:
                raise c.INSTANCES_NOT_ARRAY.error(kind=json_type(instances))
            if not instances:
                raise c.EMPTY_BATCH.error()
            if len(instances) > max_rows:
                raise c.BATCH_TOO_LARGE.error(rows=len(instances), limit=max_rows)
            rows = self._rows(instances)
            batch = True
        else:
            rows = [self.row(payload)]
            batch = False
        return finite_float32(np.array(rows, dtype=np.float64), c.NOT_FINITE), batch


def finite_float32(matrix: np.ndarray, rule: c.Rule) -> np.ndarray:
    """The matrix as float32, refused by ``rule`` when a value is NaN, infinite or beyond float32."""
    if not np.isfinite(matrix).all() or np.abs(matrix).max() > c.FLOAT32_MAX:
        raise rule.error()
    return matrix.astype(np.float32)


def parse_instances(payload: Any, features: Sequence[str], max_rows: int) -> tuple[np.ndarray, bool]:
    """Return (rows as float32 of shape (n, features), whether the body was a batch)."""
    return RowReader(features).matrix(payload, max_rows)
