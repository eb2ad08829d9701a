"""The repository as the modelfleet.fleet collection, used the way others use it: built, installed
elsewhere, and applied by FQCN from a playbook outside the repository, with only its inputs given."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMAGE = os.environ.get("MODELFLEET_BASE_IMAGE", "modelfleet/debian-systemd:bookworm")
CONTAINER = "mf-collection"


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built from the repository and installed into a directory of its own."""
    work = tmp_path_factory.mktemp("collection")
    run(BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", work)
    (tarball,) = work.glob("modelfleet-fleet-*.tar.gz")
    # --force: the repository itself is linked into its collections path, which would count as installed.
    run(BIN / "ansible-galaxy", "collection", "install", "--no-deps", "--force", "-p", work / "collections", tarball)
    return work / "collections"


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True, check=False)
    run(
        "docker", "run", "-d", "--name", CONTAINER, "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "--tmpfs", "/tmp:exec", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", IMAGE, "/lib/systemd/systemd",
    )  # fmt: skip
    try:
        yield CONTAINER
    finally:
        subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True, check=False)


def test_collection_holds_the_roles_and_no_repository_paths(installed: Path) -> None:
    roles = installed / "ansible_collections" / "modelfleet" / "fleet" / "roles"
    assert sorted(p.name for p in roles.iterdir()) == [
        "alertmanager", "aws_alb", "aws_artifacts", "aws_fleet", "aws_monitoring_host", "aws_network", "balancer",
        "common", "grafana", "model_service", "nginx", "node_exporter", "prometheus",
    ]  # fmt: skip
    for defaults in roles.glob("*/defaults/main.yml"):
        assert "role_path" not in defaults.read_text(), defaults


def test_roles_by_fqcn_converge_a_host_from_outside_the_repository(installed: Path, host: str, tmp_path: Path):
    # The two inputs a user brings: a built wheel of the app and a model artifact.
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path / "dist", ROOT / "app")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    run(BIN / "model-service", "train", "--out", tmp_path / "model", "--rows", "2000", "--rounds", "10")
    site = tmp_path / "site"
    site.mkdir()
    (site / "inventory.ini").write_text(f"[app]\n{host} ansible_connection=community.docker.docker\n")
    (site / "deploy.yml").write_text(
        textwrap.dedent(f"""\
            - name: Serve a model with the modelfleet.fleet roles
              hosts: app
              become: true
              roles:
                - role: modelfleet.fleet.model_service
                  vars:
                    model_service_app_src: {wheel}
                    model_service_constraints: {ROOT / "app" / "constraints.txt"}
                    model_service_model_src: {tmp_path / "model"}
            """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env |= {
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "HOME": str(tmp_path / "home"),  # the role's default caches live under the user's home
        "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
        "ANSIBLE_NOCOLOR": "1",
    }
    playbook = [BIN / "ansible-playbook", "-i", "inventory.ini", "deploy.yml"]
    run(*playbook, cwd=site, env=env)
    assert (tmp_path / "home" / ".cache" / "modelfleet" / "wheelhouse" / "1.0.0" / wheel.name).is_file()
    ready = json.loads(run("docker", "exec", host, "curl", "-fsS", "http://127.0.0.1:8002/ready").stdout)
    assert ready == {"status": "ready", "model": "demo-classifier", "model_version": "1.0.0"}
    again = run(*playbook, cwd=site, env=env)
    assert re.search(rf"{host}\s*: ok=\d+\s+changed=0\s", again.stdout), again.stdout[-2000:]  # idempotent
    # The collection's own playbook resolves the roles it names from the collection.
    check = [BIN / "ansible-playbook", "-i", "inventory.ini", "--syntax-check", "modelfleet.fleet.app_hosts"]
    run(*check, cwd=site, env=env)
