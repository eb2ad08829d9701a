"""Model artifacts: a directory holding ``model.ubj`` (XGBoost's binary format) and ``metadata.json``.

``metadata.json`` names the model and its version, the feature names in input order, the class
labels, the xgboost version that wrote it, when, a training summary (with per-feature min/max),
and the sha256 of every other file. ``load_model`` refuses an artifact that fails any check.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .drift import check_class_profile, check_feature_profile
from .errors import ArtifactError
from .runtime import SUPPORTED_OBJECTIVES, Runtime, TreeRuntime, XGBoostRuntime

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
EQUIVALENCE_TOLERANCE = 1e-5
_REQUIRED = ("format_version", "name", "version", "features", "classes", "xgboost_version", "created_at", "files")
# Name, version and file names end up in paths on the hosts (models/NAME-VERSION-DIGEST/FILE): one path
# component each, never "." or "..". plugins/modules/model_archive.py (which runs where this package may
# not be installed) and roles/model_service/vars/main.yml (_model_service_safe_name) hold the same rule.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
SAFE_NAME_RULE = "1 to 64 letters, digits, '.', '_', '+' or '-', starting with a letter or a digit"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_metadata(directory: Path, metadata: dict[str, Any]) -> None:
    """Write metadata.json with the checksums of every file already in the directory."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != METADATA_FILE)
    metadata = {**metadata, "files": {p.name: sha256_file(p) for p in files}}
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


def check_names(metadata: dict[str, Any], path: Path) -> None:
    """Refuse a name, version or file name that is not one plain path component."""
    for key in ("name", "version"):
        if not is_safe_name(metadata[key]):
            raise ArtifactError(f"{path}: {key} {metadata[key]!r} is not a safe name ({SAFE_NAME_RULE})")
    for name in metadata["files"]:
        if not is_safe_name(name):
            raise ArtifactError(f"{path}: files lists {name!r}, which is not a plain file name ({SAFE_NAME_RULE})")


def read_metadata(directory: Path) -> dict[str, Any]:
    """Read and check the shape of metadata.json; raise ArtifactError saying what is wrong."""
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory (an artifact is a directory with {METADATA_FILE})")
    path = directory / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise ArtifactError(f"{path} lacks {', '.join(missing)}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {metadata['format_version']} is not {FORMAT_VERSION}")
    features = metadata["features"]
    if not (isinstance(features, list) and features and all(isinstance(f, str) and f for f in features)):
        raise ArtifactError(f"{path}: features must be a non-empty list of names")
    if len(set(features)) != len(features):
        raise ArtifactError(f"{path}: feature names must be unique")
    classes = metadata["classes"]
    if not (isinstance(classes, list) and len(classes) >= 2 and len({str(c) for c in classes}) == len(classes)):
        raise ArtifactError(f"{path}: classes must list at least two distinct labels")
    if not isinstance(metadata["files"], dict) or MODEL_FILE not in metadata["files"]:
        raise ArtifactError(f"{path}: files must give the sha256 of {MODEL_FILE}")
    check_names(metadata, path)
    return metadata


def verify_checksums(directory: Path, metadata: dict[str, Any]) -> None:
    for name, expected in metadata["files"].items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in {METADATA_FILE} but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(f"{path} is corrupt: sha256 {actual} but {METADATA_FILE} says {expected}")


def split_thresholds(model_json: dict[str, Any]) -> dict[int, np.ndarray]:
    """The split conditions of every tree, by feature index: where a runtime's comparisons must agree."""
    found: dict[int, list[np.ndarray]] = {}
    for tree in model_json["learner"]["gradient_booster"]["model"]["trees"]:
        left = np.asarray(tree["left_children"])
        inner = left != -1
        indices = np.asarray(tree["split_indices"])[inner]
        conditions = np.asarray(tree["split_conditions"], dtype=np.float32)[inner]
        for feature in np.unique(indices):
            found.setdefault(int(feature), []).append(conditions[indices == feature])
    return {feature: np.unique(np.concatenate(parts)) for feature, parts in found.items()}


def probe_rows(
    metadata: dict[str, Any],
    count: int = 256,
    seed: int = 0,
    thresholds: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Rows that exercise every decision a tree runtime makes.

    Each cell is one of: a value spread over the feature's training range widened by 10 % (or, for a
    feature without a recorded range, over the span of the model's own thresholds), a split threshold
    exactly (the ``<`` / ``>=`` boundary), the float32 just below a threshold, or NaN (the default
    direction of a missing value).
    """
    ranges = metadata.get("training", {}).get("feature_ranges", {})
    thresholds = thresholds or {}
    rng = np.random.default_rng(seed)
    columns = []
    for index, name in enumerate(metadata["features"]):
        cuts = thresholds.get(index, np.empty(0, dtype=np.float32))
        if name in ranges:
            low, high = float(ranges[name]["min"]), float(ranges[name]["max"])
        elif cuts.size:
            low, high = float(cuts.min()), float(cuts.max())
        else:
            low, high = -1.0, 1.0
        span = (high - low) or max(abs(low), 1.0)
        column = rng.uniform(low - 0.1 * span, high + 0.1 * span, count).astype(np.float32)
        kind = rng.choice(4, size=count, p=[0.4, 0.3, 0.2, 0.1])
        if cuts.size:
            picked = rng.choice(cuts, size=count).astype(np.float32)
            column = np.where(kind == 1, picked, column)
            column = np.where(kind == 2, np.nextafter(picked, np.float32(-np.inf)), column)
        # NaN only in the second half, so that the runtime's path without missing values is checked too.
        column[(kind == 3) & (np.arange(count) >= count // 2)] = np.nan
        columns.append(column)
    return np.column_stack(columns).astype(np.float32)


def check_feature_order(booster_names: list[str] | None, features: list[str]) -> None:
    """Refuse a model whose own feature names (when it has them) are not metadata's, in metadata's order.

    Rows are built in metadata order and predicted without xgboost's own name check, so a model trained
    on the same columns in another order would silently answer for the wrong inputs.
    """
    if booster_names is None or list(booster_names) == list(features):
        return
    if sorted(booster_names) != sorted(features):
        unknown = sorted(set(booster_names) ^ set(features))[:5]
        raise ArtifactError(
            f"the model's feature names differ from {METADATA_FILE}'s (not in both: {', '.join(unknown)})"
        )
    position = next(i for i, (a, b) in enumerate(zip(booster_names, features, strict=True)) if a != b)
    raise ArtifactError(
        f"feature order differs: the model was trained with {booster_names[position]!r} at position {position + 1} "
        f"but {METADATA_FILE} lists {features[position]!r} there"
    )


@dataclass
class LoadedModel:
    """A checked, warmed model ready to serve. Never mutated after load: reloads swap whole objects."""

    directory: Path
    metadata: dict[str, Any]
    reference: Runtime
    tree: Runtime | None
    tree_max_rows: int
    tree_fallback: str | None = None
    features: tuple[str, ...] = field(init=False)
    labels: list[Any] = field(init=False)
    label_keys: list[str] = field(init=False)
    loaded_at: float = field(default_factory=time.time)
    signals: Any = None  # drift.DriftSignals, set by the service state when it swaps this model in

    def __post_init__(self) -> None:
        self.features = tuple(self.metadata["features"])
        self.labels = list(self.metadata["classes"])
        self.label_keys = [str(label) for label in self.labels]

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    def runtime_for(self, rows: int) -> Runtime:
        if self.tree is not None and rows <= self.tree_max_rows:
            return self.tree
        return self.reference

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.runtime_for(rows.shape[0]).predict_proba(rows)


_SINGLE_ROW_PROBES = 64


def load_model(
    directory: Path, runtime: str = "auto", tree_max_rows: int = 32, xgboost_threads: int = 1
) -> LoadedModel:
    """Verify, load, cross-check and warm an artifact. Raises ArtifactError on any problem."""
    directory = Path(directory).resolve()
    metadata = read_metadata(directory)
    verify_checksums(directory, metadata)
    import xgboost  # imported here: it takes seconds, and only a real load needs it

    booster = xgboost.Booster(params={"nthread": xgboost_threads})
    try:
        booster.load_model(str(directory / MODEL_FILE))
        model_json = json.loads(booster.save_raw("json"))
    except xgboost.core.XGBoostError as exc:
        reason = str(exc).split("\n", 1)[0]  # xgboost appends a native stack trace
        raise ArtifactError(
            f"{directory / MODEL_FILE} does not load in xgboost {xgboost.__version__}: {reason}"
        ) from exc
    objective = model_json["learner"]["objective"]["name"]
    if objective not in SUPPORTED_OBJECTIVES:
        raise ArtifactError(f"objective {objective} is not served (supported: {', '.join(SUPPORTED_OBJECTIVES)})")
    if booster.num_features() != len(metadata["features"]):
        raise ArtifactError(
            f"the model expects {booster.num_features()} features but {METADATA_FILE} names {len(metadata['features'])}"
        )
    check_feature_order(booster.feature_names, metadata["features"])
    check_feature_profile(metadata, str(directory / METADATA_FILE))
    reference = XGBoostRuntime(booster, objective)
    probe = probe_rows(metadata, thresholds=split_thresholds(model_json))
    expected = reference.predict_proba(probe)
    if expected.shape != (probe.shape[0], len(metadata["classes"])):
        raise ArtifactError(
            f"the model predicts {expected.shape[1]} classes but {METADATA_FILE} names {len(metadata['classes'])}"
        )
    if not np.isfinite(expected).all():
        raise ArtifactError("the model predicts non-finite probabilities for in-range inputs")
    check_class_profile(metadata, str(directory / METADATA_FILE))
    tree: Runtime | None = None
    fallback: str | None = None
    if runtime in ("auto", "tree"):
        try:
            candidate = TreeRuntime(model_json)
            worst = float(np.abs(candidate.predict_proba(probe) - expected).max())
            # A single row takes its own path through the runtime: check it row by row too.
            for i in range(min(len(probe), _SINGLE_ROW_PROBES)):
                worst = max(worst, float(np.abs(candidate.predict_proba(probe[i : i + 1]) - expected[i]).max()))
            if worst > EQUIVALENCE_TOLERANCE:
                raise NotImplementedError(
                    f"it differs from xgboost by {worst:.2e} (> {EQUIVALENCE_TOLERANCE}) on the probe rows"
                )
        except NotImplementedError as exc:
            if runtime == "tree":
                raise ArtifactError(f"the tree runtime cannot serve this model: {exc}") from exc
            fallback = str(exc)  # auto: xgboost serves every batch size; the caller logs and counts it
        else:
            tree = candidate
    loaded = LoadedModel(
        directory=directory,
        metadata=metadata,
        reference=reference,
        tree=tree,
        tree_max_rows=tree_max_rows if runtime == "auto" else (1 << 30 if runtime == "tree" else 0),
        tree_fallback=fallback,
    )
    for size in (1, 8, 64):  # warm both runtimes and their allocations before readiness
        loaded.predict_proba(probe[:size])
        reference.predict_proba(probe[:size])
    return loaded
