from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from model_service.app import create_app
from model_service.artifact import write_metadata
from model_service.config import Settings
from model_service.train import TrainOptions, train

SMALL = TrainOptions(rows=3000, rounds=30, max_depth=5, seed=7)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo model (210 trees), trained once per test session."""
    out = tmp_path_factory.mktemp("artifacts") / "v1"
    train(out, SMALL)
    return out


@pytest.fixture(scope="session")
def artifact_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "v2"
    train(out, TrainOptions(rows=3000, rounds=20, max_depth=4, seed=8, version="2.0.0"))
    return out


@pytest.fixture
def metadata(artifact: Path) -> dict:
    return json.loads((artifact / "metadata.json").read_text())


@pytest.fixture
def instance(metadata: dict) -> dict[str, float]:
    ranges = metadata["training"]["feature_ranges"]
    return {name: round((r["min"] + r["max"]) / 2, 3) for name, r in ranges.items()}


@pytest.fixture
def broken_copy(artifact: Path, tmp_path: Path):
    """Copy the good artifact and spoil it with the given function."""

    def make(spoil) -> Path:
        target = tmp_path / "broken"
        shutil.copytree(artifact, target)
        spoil(target)
        return target

    return make


def rewrite_metadata(directory: Path, **changes) -> None:
    """Change metadata.json and write it back with fresh checksums (as a careless tool would)."""
    meta = json.loads((directory / "metadata.json").read_text())
    meta.update(changes)
    meta.pop("files")
    write_metadata(directory, meta)


@pytest.fixture(scope="session")
def small_options() -> TrainOptions:
    return SMALL


@pytest.fixture
def client(artifact: Path):
    app = create_app(Settings(model_path=artifact, access_log=False, max_batch_rows=50, max_body_bytes=200_000))
    return app.test_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveService:
    """A real `model-service serve` process on a loopback port."""

    def __init__(self, model: Path, tmp_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"service-{self.port}.log"
        environ = {**os.environ, **{f"MODEL_SERVICE_{k.upper()}": v for k, v in env.items()}}
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model_service", "serve", "--model", str(model), "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environ,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"service not ready in {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def live(tmp_path: Path) -> Iterator:
    started: list[LiveService] = []

    def start(model: Path, **env: str) -> LiveService:
        service = LiveService(model, tmp_path, **env)
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        service.stop()
