from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost
from conftest import rewrite_metadata
from model_service.artifact import load_model, probe_rows, sha256_file
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


def test_tree_runtime_binary_logistic() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(500, 5)).astype(np.float32)
    labels = (data[:, 0] + data[:, 1] > 0).astype(int)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3}, xgboost.DMatrix(data, label=labels), 15)
    tree = TreeRuntime(json.loads(booster.save_raw("json")))
    reference = XGBoostRuntime(booster, "binary:logistic")
    assert np.abs(tree.predict_proba(data) - reference.predict_proba(data)).max() <= 1e-5


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
