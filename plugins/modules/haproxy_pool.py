"""Ansible module: set which servers of an HAProxy backend take traffic, and how much, without a reload."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_pool
short_description: Put an HAProxy backend's servers in service, at a weight, or drain them, through the runtime API
description:
  - >-
    The backend lists every address a host may take as a server (the role C(balancer) writes them, all
    disabled). This module makes the backend's runtime state match what is asked: the servers of
    O(servers) ready at their weight, those of O(drain) draining (no new request, the ones in progress
    finish), every other server in maintenance. Nothing is reloaded: connections that clients keep
    alive stay open across every change, and a request already on its way is never cut.
  - >-
    With O(wait_drained) it waits until the draining servers have no request in progress (read from
    the backend's statistics, not a sleep) and then puts them in maintenance, so that their hosts can
    be removed. With O(wait_up) it waits until every ready server passes its health check.
  - The resulting state is written to O(state_file), which HAProxy loads when it starts again.
version_added: "0.8.0"
author: modelfleet
options:
  socket:
    description: HAProxy's admin socket (C(stats socket ... level admin)).
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: The backend whose servers are set.
    type: str
    default: app
  servers:
    description: Addresses (C(IP) or C(IP:PORT)) that take traffic, each with its weight (1-256).
    type: dict
    default: {}
  drain:
    description: Addresses that take no new request but finish the ones in progress.
    type: list
    elements: str
    default: []
  wait_drained:
    description: Wait until the draining servers have no request in progress, then put them in maintenance.
    type: bool
    default: false
  wait_up:
    description: >-
      Wait until every server this call takes out of maintenance passes its health check (servers already
      in service are left to their checks: a host being healed does not hold a roll up).
    type: bool
    default: false
  timeout:
    description: Seconds to wait for O(wait_drained) and O(wait_up) together.
    type: int
    default: 60
  query:
    description: Only read and return the servers' state; change nothing (the other options are ignored).
    type: bool
    default: false
  state_file:
    description: Where the servers' state is saved for HAProxy's next start (C(server-state-file)); empty to skip.
    type: path
    default: /var/lib/haproxy/server-state
"""

EXAMPLES = r"""
- name: A canary at a tenth of the traffic, the old hosts at the rest
  modelfleet.fleet.haproxy_pool:
    servers: {"172.31.250.10": 90, "172.31.250.11": 90, "172.31.250.12": 20}
    wait_up: true

- name: Drain a host, then take it out of service
  modelfleet.fleet.haproxy_pool:
    servers: {"172.31.250.11": 100, "172.31.250.12": 100}
    drain: ["172.31.250.10"]
    wait_drained: true
"""

RETURN = r"""
servers:
  description: >-
    Every server of the backend after the change, by address: its state, weight, health and requests in progress.
  returned: success
  type: dict
commands:
  description: The runtime API commands sent (or that would be sent in check mode).
  returned: success
  type: list
waited:
  description: Seconds spent waiting for drains and health checks.
  returned: success
  type: float
"""

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.basic import AnsibleModule

# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited and resolution maintenance; forced and
# inherited drain. 0x04 (CMAINT) only remembers that the configuration started the server disabled.
_MAINT = 0x01 | 0x02 | 0x20
_DRAIN = 0x08 | 0x10
_OP_STATES = {0: "down", 1: "starting", 2: "up", 3: "stopping"}


@dataclass
class Server:
    name: str
    address: str  # IP:PORT
    state: str  # ready, drain, maint
    weight: int
    health: str = "down"
    sessions: int = 0

    def matches(self, address: str) -> bool:
        return self.address == address or self.address.rsplit(":", 1)[0] == address


def parse_servers_state(text: str, backend: str) -> dict[str, Server]:
    """``show servers state BACKEND`` as servers by name."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("#")), None)
    if header is None:
        raise ValueError(f"no server state for backend {backend!r}: {text.strip()[:200]}")
    fields = header.lstrip("# ").split()
    servers = {}
    for line in lines:
        if line.startswith("#") or len(line.split()) < len(fields) - 8:
            continue
        row = dict(zip(fields, line.split(), strict=False))
        if row.get("be_name") != backend:
            continue
        admin = int(row["srv_admin_state"])
        state = "maint" if admin & _MAINT else "drain" if admin & _DRAIN else "ready"
        servers[row["srv_name"]] = Server(
            name=row["srv_name"],
            address=f"{row['srv_addr']}:{row['srv_port']}",
            state=state,
            weight=int(row["srv_uweight"]),
            health=_OP_STATES.get(int(row["srv_op_state"]), "down"),
        )
    return servers


def parse_sessions(csv_text: str, backend: str) -> dict[str, int]:
    """Requests in progress per server (``scur``) from ``show stat``."""
    lines = [line for line in csv_text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("#"):
        return {}
    fields = lines[0].lstrip("# ").split(",")
    sessions = {}
    for line in lines[1:]:
        row = dict(zip(fields, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
            sessions[row["svname"]] = int(row.get("scur") or 0)
    return sessions


def plan(current: dict[str, Server], servers: dict[str, int], drain: list[str], backend: str) -> list[str]:
    """The runtime commands that take ``current`` to: ``servers`` ready at their weights, ``drain``
    draining, the rest in maintenance."""
    unknown = [a for a in [*servers, *drain] if not any(s.matches(a) for s in current.values())]
    if unknown:
        raise ValueError(
            f"backend {backend!r} has no server for {', '.join(sorted(unknown))} (it lists "
            f"{', '.join(sorted(s.address for s in current.values())) or 'none'})"
        )
    both = [a for a in servers if a in drain]
    if both:
        raise ValueError(f"{', '.join(both)} asked both to serve and to drain")
    bad = {a: w for a, w in servers.items() if not 1 <= int(w) <= 256}
    if bad:
        raise ValueError(f"weights must be 1-256: {bad}")
    commands: list[str] = []
    for server in sorted(current.values(), key=lambda s: s.name):
        ref = f"{backend}/{server.name}"
        weight = next((int(w) for a, w in servers.items() if server.matches(a)), None)
        draining = any(server.matches(a) for a in drain)
        if weight is not None:
            if server.state == "maint":
                # HAProxy takes a server that leaves maintenance for healthy at once. At weight 0 it gets
                # no request until it is marked down, so that only passing health checks bring it in.
                commands += [
                    f"set server {ref} weight 0",
                    f"set server {ref} state ready",
                    f"set server {ref} health down",
                    f"set server {ref} weight {weight}",
                ]
                continue
            if server.weight != weight:
                commands.append(f"set server {ref} weight {weight}")
            if server.state != "ready":
                commands.append(f"set server {ref} state ready")
        elif draining:
            if server.state == "ready":
                commands.append(f"set server {ref} state drain")
        elif server.state != "maint":
            commands.append(f"set server {ref} state maint")
    return commands


class Runtime:
    """HAProxy's runtime API on its admin socket: one command a connection."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self, backend: str) -> dict[str, Server]:
        found = parse_servers_state(self(f"show servers state {backend}"), backend)
        for name, count in parse_sessions(self("show stat"), backend).items():
            if name in found:
                found[name].sessions = count
        return found


def _table(servers: dict[str, Server]) -> dict[str, dict[str, Any]]:
    return {
        s.address: {"name": s.name, "state": s.state, "weight": s.weight, "health": s.health, "sessions": s.sessions}
        for s in sorted(servers.values(), key=lambda s: s.name)
    }


def _diff_text(servers: dict[str, Server]) -> str:
    return "".join(
        f"{s.address} {s.state} weight {s.weight}\n"
        for s in sorted(servers.values(), key=lambda s: s.name)
        if s.state != "maint"
    )


def _save_state(runtime: Runtime, backend: str, path: str) -> None:
    text = runtime(f"show servers state {backend}")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".server-state.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    runtime = Runtime(p["socket"])
    backend = p["backend"]
    servers = {str(a): int(w) for a, w in p["servers"].items()}
    drain = [a for a in p["drain"] if a]
    if p["query"]:
        try:
            return {"changed": False, "commands": [], "servers": _table(runtime.servers(backend)), "waited": 0.0}
        except (OSError, ValueError) as err:
            module.fail_json(msg=f"HAProxy: {err}")
    if module.check_mode and not os.path.exists(p["socket"]):
        # A balancer not installed yet (a first run in check mode): every server listed would be set.
        return {"changed": bool(servers), "commands": [], "servers": {}, "waited": 0.0}
    try:
        before = runtime.servers(backend)
        commands = plan(before, servers, drain, backend)
    except (OSError, ValueError) as err:
        module.fail_json(msg=f"HAProxy: {err}")
    joining = {s.name for s in before.values() if s.state == "maint" and any(s.matches(a) for a in servers)}
    result: dict[str, Any] = {"changed": bool(commands), "commands": commands, "waited": 0.0}
    if module.check_mode:
        result["servers"] = _table(before)
        if module._diff and commands:
            result["diff"] = {"before": _diff_text(before), "after": "(" + "; ".join(commands) + ")\n"}
        return result
    for command in commands:
        answer = runtime(command).strip()
        if answer:
            module.fail_json(msg=f"HAProxy refused '{command}': {answer}", commands=commands)
    began = time.monotonic()
    deadline = began + p["timeout"]
    draining = {s.name for s in runtime.servers(backend).values() if any(s.matches(a) for a in drain)}
    if p["wait_drained"] and draining:
        while True:
            now = runtime.servers(backend)
            busy = {s.address: s.sessions for s in now.values() if s.name in draining and s.sessions > 0}
            if not busy:
                break
            if time.monotonic() > deadline:
                module.fail_json(msg=f"servers still busy after {p['timeout']} s of draining: {busy}")
            time.sleep(0.2)
        for name in sorted(draining):
            if now[name].state != "maint":
                command = f"set server {backend}/{name} state maint"
                runtime(command)
                result["commands"].append(command)
                result["changed"] = True
    if p["wait_up"] and joining:
        while True:
            down = [s.address for s in runtime.servers(backend).values() if s.name in joining and s.health != "up"]
            if not down:
                break
            if time.monotonic() > deadline:
                module.fail_json(msg=f"servers not passing their health check after {p['timeout']} s: {down}")
            time.sleep(0.2)
    result["waited"] = round(time.monotonic() - began, 2)
    after = runtime.servers(backend)
    if result["changed"] and p["state_file"]:
        _save_state(runtime, backend, p["state_file"])
    if module._diff and result["changed"]:
        result["diff"] = {"before": _diff_text(before), "after": _diff_text(after)}
    result["servers"] = _table(after)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "backend": {"type": "str", "default": "app"},
            "servers": {"type": "dict", "default": {}},
            "drain": {"type": "list", "elements": "str", "default": []},
            "wait_drained": {"type": "bool", "default": False},
            "wait_up": {"type": "bool", "default": False},
            "timeout": {"type": "int", "default": 60},
            "query": {"type": "bool", "default": False},
            "state_file": {"type": "path", "default": "/var/lib/haproxy/server-state"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
