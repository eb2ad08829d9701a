#!/usr/bin/python3
"""Autohealing of the local fleet: what the Auto Scaling Group's health checks do on AWS.

Runs in its own container (modelfleet-autoheal) on the fleet's network, with the Docker socket. Every
INTERVAL seconds it looks at each app host (label modelfleet.role=app):
- a host that is not running (killed, crashed, stopped) for more than GRACE_EXITED seconds is started
  again: same image, same address, so the balancer's upstream list needs no change;
- a running host whose /ready (through its nginx) fails FAILURES times in a row, and that started more
  than GRACE_STARTED seconds ago, is restarted.
Meanwhile the balancer routes around the host (passive failure detection and retries on another host).
A host that Ansible removes (drained by a release or a scale-down) disappears at once and is left alone.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime

SOCKET = os.environ.get("DOCKER_SOCKET", "/var/run/docker.sock")
INTERVAL = float(os.environ.get("AUTOHEAL_INTERVAL", "2"))
FAILURES = int(os.environ.get("AUTOHEAL_FAILURES", "3"))
GRACE_STARTED = float(os.environ.get("AUTOHEAL_GRACE_STARTED", "60"))
GRACE_EXITED = float(os.environ.get("AUTOHEAL_GRACE_EXITED", "3"))
FILTERS = json.dumps({"label": ["modelfleet.project=modelfleet", "modelfleet.role=app"]})


class DockerConnection(http.client.HTTPConnection):
    def __init__(self) -> None:
        super().__init__("localhost", timeout=30)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(SOCKET)


def docker(method: str, path: str) -> object:
    connection = DockerConnection()
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {body[:200]!r}")
        return json.loads(body) if body else None
    finally:
        connection.close()


def seconds_since(stamp: str) -> float:
    """Seconds since a Docker timestamp (RFC 3339 with nanoseconds); infinity for the zero time."""
    if not stamp or stamp.startswith("0001-"):
        return float("inf")
    moment = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00")
    return (datetime.now(UTC) - moment).total_seconds()


def ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def log(event: str, **fields: object) -> None:
    print(json.dumps({"time": datetime.now(UTC).isoformat(timespec="seconds"), "event": event, **fields}), flush=True)


def heal_once(failures: dict[str, int]) -> None:
    listed = docker("GET", "/containers/json?all=1&filters=" + urllib.parse.quote(FILTERS))
    seen = set()
    for summary in listed:  # type: ignore[union-attr]
        ident = summary["Id"]
        seen.add(ident)
        try:
            state = docker("GET", f"/containers/{ident}/json")["State"]  # type: ignore[index]
        except RuntimeError:
            continue  # removed meanwhile
        name = summary["Names"][0].lstrip("/")
        address = summary["Labels"].get("modelfleet.address", "")
        if not state["Running"]:
            if seconds_since(state["FinishedAt"]) >= GRACE_EXITED:
                log("start", host=name, reason=f"{state['Status']} (exit code {state['ExitCode']})")
                docker("POST", f"/containers/{ident}/start")
                failures.pop(ident, None)
            continue
        if seconds_since(state["StartedAt"]) < GRACE_STARTED or ready(address):
            failures.pop(ident, None)
            continue
        failures[ident] = failures.get(ident, 0) + 1
        if failures[ident] >= FAILURES:
            log("restart", host=name, reason=f"/ready failed {failures[ident]} times in a row")
            docker("POST", f"/containers/{ident}/restart?t=5")
            failures.pop(ident, None)
    for ident in set(failures) - seen:
        failures.pop(ident)


def main() -> int:
    log("watching", interval=INTERVAL, failures=FAILURES, grace_started=GRACE_STARTED)
    failures: dict[str, int] = {}
    while True:
        try:
            heal_once(failures)
        except (OSError, RuntimeError, ValueError) as exc:
            log("error", detail=str(exc))
        time.sleep(INTERVAL)


if __name__ == "__main__":
    sys.exit(main())
