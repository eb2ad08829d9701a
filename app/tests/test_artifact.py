from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost
from conftest import rewrite_metadata
from model_service.artifact import load_model, probe_rows, read_metadata, sha256_file, split_thresholds, write_metadata
from model_service.errors import ArtifactError
from model_service.runtime import TreeRuntime, XGBoostRuntime
from model_service.train import TrainOptions, train


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_service", *args], capture_output=True, text=True, check=False)


def test_artifact_contents(artifact: Path, metadata: dict) -> None:
    assert sorted(p.name for p in artifact.iterdir()) == ["metadata.json", "model.ubj"]
    assert metadata["features"] == [f"feat{i}" for i in range(1, 37)]
    assert metadata["classes"] == [1, 2, 3, 4, 5, 6, 7]
    assert metadata["xgboost_version"] == xgboost.__version__
    assert metadata["files"] == {"model.ubj": sha256_file(artifact / "model.ubj")}
    ranges = metadata["training"]["feature_ranges"]
    assert set(ranges) == set(metadata["features"])
    assert all(r["min"] < r["max"] for r in ranges.values())
    assert metadata["training"]["test_accuracy"] > 0.5


def test_training_is_reproducible(tmp_path: Path, artifact: Path, small_options: TrainOptions) -> None:
    again = tmp_path / "again"
    train(again, small_options)
    assert sha256_file(again / "model.ubj") == sha256_file(artifact / "model.ubj")


def test_train_refuses_to_overwrite(artifact: Path, small_options: TrainOptions) -> None:
    with pytest.raises(FileExistsError):
        train(artifact, small_options)


def test_validate_good_artifact(artifact: Path) -> None:
    result = run_cli("validate", str(artifact), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["features"] == 36
    assert report["runtime"] == "tree"


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda d: (d / "model.ubj").write_bytes((d / "model.ubj").read_bytes()[:-10]), "is corrupt: sha256"),
        (lambda d: (d / "metadata.json").unlink(), "metadata.json is missing"),
        (lambda d: (d / "metadata.json").write_text("{not json"), "is not readable JSON"),
        (lambda d: (d / "model.ubj").unlink(), "listed in metadata.json but missing"),
        (lambda d: rewrite_metadata(d, features=[f"f{i}" for i in range(35)]), "expects 36 features but"),
        (lambda d: rewrite_metadata(d, classes=[1, 2, 3]), "predicts 7 classes but metadata.json names 3"),
        (lambda d: rewrite_metadata(d, features=["a", "a"]), "feature names must be unique"),
        (lambda d: rewrite_metadata(d, format_version=9), "format_version 9"),
    ],
)
def test_validate_refuses_broken_artifacts(broken_copy, spoil, message: str) -> None:
    broken = broken_copy(spoil)
    with pytest.raises(ArtifactError, match=message):
        load_model(broken)
    result = run_cli("validate", str(broken))
    assert result.returncode == 1
    assert "INVALID" in result.stderr
    assert message.split(":")[0] in result.stderr


def _set_metadata(directory: Path, **changes) -> None:
    """Change metadata.json as written, the checksums of its files kept (unlike rewrite_metadata)."""
    meta = json.loads((directory / "metadata.json").read_text())
    extra_files = changes.pop("extra_files", {})
    meta.update(changes)
    meta["files"].update(extra_files)
    (directory / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "../x"}, "name '../x' is not a safe name"),
        ({"name": "."}, "name '.' is not a safe name"),
        ({"version": "1.0/../../etc"}, "version '1.0/../../etc' is not a safe name"),
        ({"version": 2}, "version 2 is not a safe name"),
        ({"extra_files": {"sub/model.ubj": "0" * 64}}, "files lists 'sub/model.ubj', which is not a plain file name"),
        ({"extra_files": {".env": "0" * 64}}, "files lists '.env', which is not a plain file name"),
    ],
)
def test_validate_refuses_names_that_are_not_plain_path_components(broken_copy, changes, message: str) -> None:
    broken = broken_copy(lambda d: _set_metadata(d, **changes))
    with pytest.raises(ArtifactError, match=re.escape(message)):
        load_model(broken)
    result = run_cli("validate", str(broken))
    assert result.returncode == 1
    assert "INVALID" in result.stderr
    assert message in result.stderr
    assert "letters, digits" in result.stderr


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("demo-classifier", "1.0.0"),
        ("demo-classifier", "2.0.0"),
        ("demo-classifier", "2.1.0"),
        ("demo-classifier", "3.0.0"),
        ("custom", "1.0.0-rc.1+build.7"),
        ("Churn_Model.v2", "2026.01.15"),
    ],
)
def test_the_project_s_names_and_versions_are_accepted(broken_copy, name: str, version: str) -> None:
    artifact = broken_copy(lambda d: rewrite_metadata(d, name=name, version=version))
    metadata = read_metadata(artifact)
    assert (metadata["name"], metadata["version"]) == (name, version)


def test_validate_refuses_garbage_model_with_matching_checksum(broken_copy) -> None:
    def spoil(d: Path) -> None:
        (d / "model.ubj").write_bytes(b"this is not a model")
        rewrite_metadata(d)

    with pytest.raises(ArtifactError, match="does not load in xgboost"):
        load_model(broken_copy(spoil))


def test_validate_missing_path() -> None:
    result = run_cli("validate", "/nonexistent/artifact")
    assert result.returncode == 1
    assert "is not a directory" in result.stderr


def _booster(artifact: Path) -> xgboost.Booster:
    booster = xgboost.Booster()
    booster.load_model(str(artifact / "model.ubj"))
    return booster


def test_tree_runtime_matches_xgboost(artifact: Path, metadata: dict) -> None:
    booster = _booster(artifact)
    tree = TreeRuntime(json.loads(booster.save_raw("json")))
    reference = XGBoostRuntime(booster, "multi:softprob")
    rows = probe_rows(metadata, count=2000, seed=123)
    for size in (1, 7, 64, 2000):
        assert np.abs(tree.predict_proba(rows[:size]) - reference.predict_proba(rows[:size])).max() <= 1e-5
    with_missing = rows[:200].copy()
    with_missing[::3, 5] = np.nan
    with_missing[1::4, 0] = np.nan
    assert np.abs(tree.predict_proba(with_missing) - reference.predict_proba(with_missing)).max() <= 1e-5
    for row in with_missing[:12]:  # one row at a time walks its own path through the trees
        single = row[None, :]
        assert np.abs(tree.predict_proba(single) - reference.predict_proba(single)).max() <= 1e-5


def test_tree_runtime_binary_logistic() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(500, 5)).astype(np.float32)
    labels = (data[:, 0] + data[:, 1] > 0).astype(int)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3}, xgboost.DMatrix(data, label=labels), 15)
    tree = TreeRuntime(json.loads(booster.save_raw("json")))
    reference = XGBoostRuntime(booster, "binary:logistic")
    assert np.abs(tree.predict_proba(data) - reference.predict_proba(data)).max() <= 1e-5
    for row in data[:5]:
        assert np.abs(tree.predict_proba(row[None, :]) - reference.predict_proba(row[None, :])).max() <= 1e-5


def test_train_cli_and_help(tmp_path: Path) -> None:
    for command in ("train", "validate", "predict", "serve", "check-config"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert "usage: model-service" in result.stdout
    result = run_cli("train", "--out", str(tmp_path / "new" / "m"), "--rows", "500", "--rounds", "3")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert run_cli("train", "--out", str(tmp_path / "new" / "m")).returncode == 1
    assert run_cli("bogus").returncode == 2


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('model_path = "/m"\nthreads = 8\naccess_log = false\n')
    assert run_cli("check-config", str(good)).returncode == 0
    for text, message in (
        ("threads = 'many'\n", "setting 'threads' must be a int"),
        ("colour = 1\n", "unknown settings: colour"),
        ("port = 0\n", "port must be 1-65535"),
        ("runtime = 'gpu'\n", "runtime must be one of"),
        ("threads = \n", "not valid TOML"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        result = run_cli("check-config", str(bad))
        assert result.returncode == 1, text
        assert message in result.stderr, result.stderr


def _artifact_from(booster: xgboost.Booster, directory: Path, features: list[str], classes: list) -> Path:
    """Write an artifact for a booster trained here (as a user's own training code would)."""
    directory.mkdir()
    booster.save_model(str(directory / "model.ubj"))
    write_metadata(
        directory,
        {
            "format_version": 1,
            "name": "custom",
            "version": "1.0.0",
            "features": features,
            "classes": classes,
            "xgboost_version": xgboost.__version__,
            "created_at": "2026-01-01T00:00:00Z",
        },
    )
    return directory


def test_trained_model_carries_feature_names(artifact: Path, metadata: dict) -> None:
    assert _booster(artifact).feature_names == metadata["features"]


def test_feature_order_mismatch_is_refused(broken_copy, metadata: dict) -> None:
    swapped = list(metadata["features"])
    swapped[2], swapped[3] = swapped[3], swapped[2]
    broken = broken_copy(lambda d: rewrite_metadata(d, features=swapped))
    with pytest.raises(ArtifactError, match="feature order differs: the model was trained with 'feat3' at position 3"):
        load_model(broken)
    result = run_cli("validate", str(broken))
    assert result.returncode == 1
    assert "feature order differs" in result.stderr


def test_feature_names_that_differ_are_refused(broken_copy, metadata: dict) -> None:
    renamed = ["x" + name for name in metadata["features"]]
    with pytest.raises(ArtifactError, match="feature names differ"):
        load_model(broken_copy(lambda d: rewrite_metadata(d, features=renamed)))


def test_model_without_feature_names_still_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(400, 4)).astype(np.float32)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3}, xgboost.DMatrix(data, label=data[:, 0] > 0), 5
    )
    assert booster.feature_names is None
    model = load_model(_artifact_from(booster, tmp_path / "a", ["a", "b", "c", "d"], [0, 1]))
    assert model.tree is not None


def test_probe_rows_hit_thresholds_and_missing_values(artifact: Path, metadata: dict) -> None:
    thresholds = split_thresholds(json.loads(_booster(artifact).save_raw("json")))
    rows = probe_rows(metadata, thresholds=thresholds)
    half = rows.shape[0] // 2
    assert not np.isnan(rows[:half]).any()
    assert np.isnan(rows[half:]).any()
    feature, cuts = max(thresholds.items(), key=lambda item: item[1].size)
    assert np.isin(rows[:, feature], cuts).sum() > 10
    assert np.isin(rows[:, feature], np.nextafter(cuts, np.float32(-np.inf))).sum() > 5


def test_probe_rows_without_ranges_follow_the_thresholds(artifact: Path, metadata: dict) -> None:
    thresholds = split_thresholds(json.loads(_booster(artifact).save_raw("json")))
    bare = {**metadata, "training": {}}
    rows = probe_rows(bare, thresholds=thresholds)
    feature, cuts = max(thresholds.items(), key=lambda item: float(item[1].max() - item[1].min()))
    column = rows[:, feature][~np.isnan(rows[:, feature])]
    span = float(cuts.max() - cuts.min())
    assert column.min() >= cuts.min() - 0.11 * span
    assert column.max() <= cuts.max() + 0.11 * span
    assert column.max() - column.min() > 0.9 * span  # the ranges the trees split on, not a guess


def test_auto_falls_back_to_xgboost_when_the_tree_runtime_disagrees(artifact: Path, monkeypatch) -> None:
    real = TreeRuntime.predict_proba
    monkeypatch.setattr(TreeRuntime, "predict_proba", lambda self, rows: real(self, rows) + 1e-3)
    model = load_model(artifact, runtime="auto")
    assert model.tree is None
    assert "differs from xgboost by 1.00e-03" in model.tree_fallback
    assert model.runtime_for(1).name == "xgboost"
    with pytest.raises(ArtifactError, match="tree runtime cannot serve this model: it differs"):
        load_model(artifact, runtime="tree")


def test_vector_leaf_model_is_served_by_xgboost(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.normal(size=(600, 5)).astype(np.float32)
    labels = (data[:, 0] > 0).astype(int) + (data[:, 1] > 0).astype(int)
    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "tree_method": "hist",
        "multi_strategy": "multi_output_tree",
    }
    booster = xgboost.train(params, xgboost.DMatrix(data, label=labels), 5)
    directory = _artifact_from(booster, tmp_path / "vector", [f"f{i}" for i in range(5)], [0, 1, 2])
    model = load_model(directory)
    assert model.tree is None
    assert "vector-leaf" in model.tree_fallback
    expected = booster.inplace_predict(data[:3])
    assert np.abs(model.predict_proba(data[:3]) - expected).max() <= 1e-6
    result = run_cli("validate", str(directory), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runtime"] == "xgboost"
