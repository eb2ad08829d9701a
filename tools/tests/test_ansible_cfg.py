"""ansible.cfg: Ansible silently ignores a misspelt key, so every key is validated and shown to apply."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# ansible-config of the environment running the tests (the project's venv).
ANSIBLE_CONFIG = Path(sys.executable).parent / "ansible-config"


def _config(*args: str, cfg: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg)}
    return subprocess.run([str(ANSIBLE_CONFIG), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_project_config_is_valid() -> None:
    result = _config("validate", "-t", "all", cfg=ROOT / "ansible.cfg")
    assert result.returncode == 0, result.stderr


def test_misspelt_key_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "ansible.cfg"
    bad.write_text((ROOT / "ansible.cfg").read_text().replace("\nforks =", "\nforkz ="))
    result = _config("validate", "-t", "all", cfg=bad)
    assert result.returncode != 0
    assert "forkz" in result.stderr


def test_settings_take_effect() -> None:
    dump = _config("dump", "--only-changed", "-t", "all", cfg=ROOT / "ansible.cfg").stdout
    for line in (
        "CALLBACKS_ENABLED(",
        "DEFAULT_GATHERING(",
        "CACHE_PLUGIN(",
        "INJECT_FACTS_AS_VARS(",
        "DEFAULT_ROLES_PATH(",
        "COLLECTIONS_PATHS(",
        "DEFAULT_FORKS(",
    ):
        assert line in dump, f"{line} not in ansible-config dump"
    assert "pipelining(" in dump
    assert "ansible.posix.profile_tasks" in dump
