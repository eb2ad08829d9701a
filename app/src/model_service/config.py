"""Service settings: defaults, then a TOML file, then MODEL_SERVICE_* environment variables, then flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "MODEL_SERVICE_"
RUNTIMES = ("auto", "tree", "xgboost")


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told. Field names are the file keys and, upper-cased, the env names."""

    model_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 4
    connection_limit: int = 100
    channel_timeout: int = 30
    max_body_bytes: int = 1_048_576
    max_batch_rows: int = 1000
    runtime: str = "auto"
    tree_max_rows: int = 32
    xgboost_threads: int = 1
    drain_seconds: float = 0.0
    shutdown_timeout: float = 30.0
    access_log: bool = True
    metrics_dir: Path | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535, not {self.port}")
        for name in ("threads", "connection_limit", "channel_timeout", "max_body_bytes", "max_batch_rows"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.runtime not in RUNTIMES:
            problems.append(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        if self.drain_seconds < 0 or self.shutdown_timeout < 0:
            problems.append("drain_seconds and shutdown_timeout cannot be negative")
        if problems:
            raise ValueError("; ".join(problems))


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn a file or environment value into the field's type, with a message naming the setting."""
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if "Path" in kind_name:
            return None if value in (None, "") else Path(value)
        if kind_name == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind_name == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind_name == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name!r} must be a {kind_name.replace(' | None', '')}, not {value!r}") from exc


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults < config file < environment < overrides (None values in overrides are ignored)."""
    types = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {config_file} is not valid TOML: {exc}") from exc
        unknown = sorted(set(data) - set(types))
        if unknown:
            raise ValueError(f"config file {config_file} has unknown settings: {', '.join(unknown)}")
        values.update({k: _coerce(k, types[k], v) for k, v in data.items()})
    env = os.environ if environ is None else environ
    for name, kind in types.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(ENV_PREFIX + name.upper(), kind, raw)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, types[name], value)
    return dataclasses.replace(Settings(), **values)
