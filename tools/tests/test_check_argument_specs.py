from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_argument_specs", ROOT / "tools" / "check_argument_specs.py")
assert _spec is not None
assert _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
sys.modules["check_argument_specs"] = check
_spec.loader.exec_module(check)


@pytest.fixture
def roles(tmp_path: Path) -> Path:
    """A copy of the project's node_exporter role, to be spoiled by each test."""
    shutil.copytree(ROOT / "roles" / "node_exporter", tmp_path / "node_exporter")
    return tmp_path


def test_project_roles_agree() -> None:
    assert check.main([str(ROOT / "roles")]) == 0


def test_copy_agrees(roles: Path) -> None:
    assert check.main([str(roles)]) == 0


def test_undocumented_default_fails(roles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (roles / "node_exporter" / "defaults" / "main.yml").open("a") as f:
        f.write("node_exporter_new_knob: 3\n")
    assert check.main([str(roles)]) == 1
    assert "default 'node_exporter_new_knob' is not documented" in capsys.readouterr().err


def test_spec_without_default_fails(roles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = roles / "node_exporter" / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace("node_exporter_port: 9100\n", ""))
    assert check.main([str(roles)]) == 1
    assert "option 'node_exporter_port' is neither required nor set" in capsys.readouterr().err


def test_different_default_values_fail(roles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = roles / "node_exporter" / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace("node_exporter_port: 9100", "node_exporter_port: 9200"))
    assert check.main([str(roles)]) == 1
    assert "'node_exporter_port' defaults to 9200" in capsys.readouterr().err


def test_missing_prefix_fails(roles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    role = roles / "node_exporter"
    (role / "defaults" / "main.yml").open("a").write("listen_port: 1\n")
    specs = role / "meta" / "argument_specs.yml"
    specs.write_text(specs.read_text() + "      listen_port:\n        type: int\n        default: 1\n")
    assert check.main([str(roles)]) == 1
    assert "'listen_port' lacks the role prefix" in capsys.readouterr().err
