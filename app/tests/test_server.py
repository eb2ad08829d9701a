"""A real `model-service serve` process (waitress) on loopback: signals, reload, drain, metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from conftest import free_port


class Load:
    """Bounded concurrent prediction load (at most `seconds`, stops by itself) counting outcomes."""

    def __init__(self, url: str, body: dict, threads: int = 4, seconds: float = 20) -> None:
        self.url, self.body, self.deadline = url, body, time.monotonic() + seconds
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                try:
                    response = session.post(self.url + "/predict", json=self.body, timeout=10)
                    outcome = str(response.status_code)
                    version = response.json().get("model_version", "") if response.ok else ""
                except requests.RequestException as exc:
                    outcome, version = type(exc).__name__, ""
                with self._lock:
                    self.outcomes[outcome] += 1
                    self.versions[version] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    @property
    def failures(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k != "200"}


def metric(url: str, name: str) -> float:
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_for(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def current(tmp_path: Path, artifact: Path) -> Path:
    """A `current` symlink to the served artifact, as the model_service role lays it out."""
    link = tmp_path / "current"
    link.symlink_to(artifact)
    return link


def switch(link: Path, target: Path) -> None:
    tmp = link.with_name(".current.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def test_serves_all_endpoints(live, artifact, instance) -> None:
    service = live(artifact)
    for path in ("/health", "/ready", "/model", "/openapi.json", "/metrics"):
        assert requests.get(service.url + path, timeout=5).status_code == 200
    response = requests.post(service.url + "/predict", json=instance, headers={"X-Request-ID": "live-1"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "live-1"
    assert response.headers["Server"] == "model-service"
    lines = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "access" and line.get("request_id") == "live-1"]
    assert access, service.log()
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/predict"
    assert access[0]["rows"] == 1
    assert access[0]["duration_ms"] > 0


def test_hot_reload_good_artifact_without_failed_requests(live, current, artifact_v2, instance) -> None:
    service = live(current)
    with Load(service.url, instance) as load:
        switch(current, artifact_v2)
        service.signal(signal.SIGHUP)
        wait_for(lambda: requests.get(service.url + "/model", timeout=5).json()["version"] == "2.0.0")
    assert load.failures == {}
    assert load.versions["1.0.0"] > 0
    assert load.versions["2.0.0"] > 0
    assert metric(service.url, "model_service_model_reloads_total") == 1
    assert metric(service.url, "model_service_model_load_failures_total") == 0


def test_hot_reload_refuses_broken_artifact_and_keeps_serving(live, current, broken_copy, instance) -> None:
    broken = broken_copy(lambda d: (d / "model.ubj").write_bytes(b"garbage"))
    service = live(current)
    with Load(service.url, instance) as load:
        switch(current, broken)
        service.signal(signal.SIGHUP)
        wait_for(lambda: metric(service.url, "model_service_model_load_failures_total") == 1)
    assert load.failures == {}
    assert set(load.versions) == {"1.0.0"}
    assert requests.get(service.url + "/ready", timeout=5).status_code == 200
    assert "model refused" in service.log()
    assert "is corrupt" in service.log()


def _request_bytes(body: bytes) -> bytes:
    head = f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split()[1]), rest


def test_sigterm_finishes_in_flight_request_and_refuses_new_ones(live, artifact, instance) -> None:
    service = live(artifact, drain_seconds="3.0")
    request = _request_bytes(json.dumps({"instances": [instance] * 50}).encode())
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as in_flight:
        in_flight.sendall(request[: len(request) // 2])  # the client is mid-request when SIGTERM arrives
        time.sleep(0.2)
        service.signal(signal.SIGTERM)
        # The drain window: still answering, not ready (asked until the signal is handled, however busy the
        # machine is).
        wait_for(lambda: requests.get(service.url + "/ready", timeout=5).status_code == 503)
        ready = requests.get(service.url + "/ready", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["error"] == "draining"

        def listener_closed() -> bool:  # past drain_seconds
            try:
                requests.post(service.url + "/predict", json=instance, timeout=5)
            except requests.ConnectionError:
                return True
            return False

        wait_for(listener_closed)
        in_flight.sendall(request[len(request) // 2 :])
        status, body = _read_response(in_flight)
    assert status == 200
    assert len(json.loads(body)["predictions"]) == 50
    assert service.proc.wait(30) == 0
    assert '"event": "stopped"' in service.log().replace('":"', '": "')


def test_draining_process_answers_and_closes_kept_alive_connections(live, artifact, instance) -> None:
    # A proxy that keeps connections to the process must not be left holding an idle one when the process
    # closes: while draining, each answer says Connection: close and the connection is closed after it.
    service = live(artifact, drain_seconds="5.0")
    request = _request_bytes(json.dumps(instance).encode())
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as kept:
        kept.sendall(request)
        status, _ = _read_response(kept)
        assert status == 200
        service.signal(signal.SIGTERM)
        wait_for(lambda: requests.get(service.url + "/ready", timeout=5).status_code == 503)  # draining now
        kept.sendall(request)  # the same connection, inside the drain window: still answered
        data = b""
        while chunk := kept.recv(65536):  # ends when the process closes the connection
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 200"), head
    assert "connection: close" in head.lower(), head
    assert service.proc.wait(30) == 0


@pytest.mark.parametrize("declared", [2_001, 200 * 1024 * 1024])
def test_body_over_the_limit_is_refused_early_in_json(live, artifact, declared) -> None:
    service = live(artifact, max_body_bytes="2000")
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        # Only the headers: the refusal must come from Content-Length, before any body is buffered.
        head = _request_bytes(b"")
        sock.sendall(head.replace(b"Content-Length: 0", f"Content-Length: {declared}".encode()))
        status, body = _read_response(sock)
    assert status == 413
    assert json.loads(body) == {
        "error": "payload_too_large",
        "detail": "the body is larger than the limit of 2000 bytes",
    }


def test_a_client_still_sending_an_oversized_body_reads_the_413(live, artifact) -> None:
    # A client that writes its whole body before it reads (http.client does) must get the JSON 413, not a
    # reset while it writes: the service reads and drops the rest of the body before it closes.
    service = live(artifact, max_body_bytes="2000")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
            sock.sendall(_request_bytes(b"x" * (16 * 1024 * 1024)))  # a reset raises here
            status, body = _read_response(sock)
        assert status == 413
        assert json.loads(body)["error"] == "payload_too_large"
    # Past the bound it stops reading: a client sending without end is cut off, not read forever, and it
    # still reads the 413 that was sent before the cut-off.
    limit = 128 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", service.port), timeout=15) as sock:
        sock.sendall(_oversized_head(999_999_999))
        sent = 0
        try:
            while sent < limit:
                sock.sendall(b"x" * 65536)
                sent += 65536
        except (ConnectionResetError, BrokenPipeError):
            pass
        status, body = _read_response(sock)
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    # What was sent is what the service read and dropped (LINGER_BYTES) plus what the kernel buffers held.
    assert 32 * 1024 * 1024 < sent < limit, f"the service took {sent} bytes of a refused body"
    assert requests.get(service.url + "/ready", timeout=5).status_code == 200


def _oversized_head(declared: int) -> bytes:
    return _request_bytes(b"").replace(b"Content-Length: 0", f"Content-Length: {declared}".encode())


def _open_lingering(port: int) -> socket.socket:
    """A connection that sent an oversized request's headers and a little of its body, read the 413, then
    went silent without closing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_oversized_head(999_999_999) + b"x" * 4096)
    status, _ = _read_response(sock)
    assert status == 413
    return sock


def test_a_silent_client_after_a_413_is_closed_and_does_not_hold_up_sigterm(live, artifact) -> None:
    from model_service.server import JsonErrorChannel

    linger = JsonErrorChannel.LINGER_SECONDS
    service = live(artifact, max_body_bytes="2000")
    with _open_lingering(service.port) as sock:
        time.sleep(linger + 2)
        # The service has closed its end: a byte sent now is answered with a reset, and the next send fails.
        # (Had it still been lingering, it would read the byte and close cleanly: the next send goes out.)
        sock.sendall(b"x")
        time.sleep(0.5)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            sock.sendall(b"x")
    # A SIGTERM while a connection lingers stops the service at once: the lingering client is not in flight.
    with _open_lingering(service.port):
        time.sleep(0.3)
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.proc.wait(10) == 0
        assert time.monotonic() - started < 5


def test_model_info_shows_only_the_served_version_after_reload(live, current, artifact_v2, tmp_path) -> None:
    directory = str(tmp_path / "metrics")
    first = live(current, metrics_dir=directory)
    second = live(current, metrics_dir=directory)
    switch(current, artifact_v2)
    for service in (first, second):
        service.signal(signal.SIGHUP)
        wait_for(lambda s=service: requests.get(s.url + "/model", timeout=5).json()["version"] == "2.0.0")
    text = requests.get(first.url + "/metrics", timeout=5).text
    info = [line for line in text.splitlines() if line.startswith("model_service_model_info{")]
    assert len(info) == 2, info  # one live sample per process
    assert all('version="2.0.0"' in line for line in info), info


def test_metrics_are_shared_by_processes_on_one_host(live, artifact, instance, tmp_path) -> None:
    directory = str(tmp_path / "metrics")
    first = live(artifact, metrics_dir=directory)
    second = live(artifact, metrics_dir=directory)
    for _ in range(3):
        assert requests.post(first.url + "/predict", json=instance, timeout=5).status_code == 200
    assert requests.post(second.url + "/predict", json=instance, timeout=5).status_code == 200
    for service in (first, second):
        assert metric(service.url, "model_service_rows_predicted_total") == 4
    text = requests.get(second.url + "/metrics", timeout=5).text
    assert text.count("model_service_model_info{") == 2  # one live sample per process (pid label)


def test_serve_refuses_broken_artifact(broken_copy, tmp_path) -> None:
    broken = broken_copy(lambda d: (d / "metadata.json").unlink())
    result = subprocess.run(
        [sys.executable, "-m", "model_service", "serve", "--model", str(broken), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "metadata.json is missing" in result.stderr


def test_serve_reads_config_file_and_env(tmp_path, artifact, live) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'model_path = "{artifact}"\nmax_batch_rows = 2\nmax_body_bytes = 100\n')
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_SERVICE_")}
    environ["MODEL_SERVICE_MAX_BODY_BYTES"] = "100000"  # the environment overrides the file
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_service", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(url + "/ready", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(up, 60)
        padded = '{"instances": [{}, {}, {}]}' + " " * 400  # over the file's 100 bytes, under the env's limit
        response = requests.post(url + "/predict", data=padded, headers={"Content-Type": "application/json"}, timeout=5)
        assert response.status_code == 413
        assert response.json()["error"] == "batch_too_large"  # from the file
        assert "limit is 2" in response.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_live_gauges_of_dead_processes_are_swept_at_start(live, artifact, tmp_path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    # A process that loaded a model and died without cleaning up (killed, or failed to bind).
    script = (
        "import os\n"
        "from model_service.metrics import Metrics\n"
        "Metrics().set_model('demo-classifier', '0.9.0', 'tree', 0.0)\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert list(directory.glob("gauge_liveall_*.db"))
    service = live(artifact, metrics_dir=str(directory))
    info = [
        line
        for line in requests.get(service.url + "/metrics", timeout=5).text.splitlines()
        if line.startswith("model_service_model_info{")
    ]
    assert len(info) == 1, info
    assert 'version="1.0.0"' in info[0]
