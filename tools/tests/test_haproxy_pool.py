"""The plan of modelfleet.fleet.haproxy_pool: HAProxy's runtime state read, and the commands that change it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "haproxy_pool", Path(__file__).parents[2] / "plugins/modules/haproxy_pool.py"
)
pool = importlib.util.module_from_spec(_SPEC)
sys.modules["haproxy_pool"] = pool  # dataclasses look their module up
_SPEC.loader.exec_module(pool)

HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port"
)
# s10 serves (configured disabled, put in service at runtime), s11 is in maintenance, s12 drains.
STATE = "\n".join(
    [
        "1",
        HEADER,
        "3 app 1 10-0-0-10-80 10.0.0.10 2 4 100 100 2 15 3 2 6 0 0 0 - 80 - 0 0 - - 0",
        "3 app 2 10-0-0-11-80 10.0.0.11 0 5 100 100 49 1 0 0 14 0 0 0 - 80 - 0 0 - - 0",
        "3 app 3 10-0-0-12-80 10.0.0.12 2 8 50 100 2 15 3 2 6 0 0 0 - 80 - 0 0 - - 0",
        "4 other 1 x 10.9.9.9 2 0 1 1 2 15 3 2 6 0 0 0 - 80 - 0 0 - - 0",
        "",
    ]
)
STAT = "\n".join(
    [
        "# pxname,svname,qcur,qmax,scur,smax",
        "app,10-0-0-10-80,0,0,3,9",
        "app,10-0-0-12-80,0,0,1,4",
        "app,BACKEND,0,0,4,9",
    ]
)


def servers() -> dict:
    found = pool.parse_servers_state(STATE, "app")
    for name, count in pool.parse_sessions(STAT, "app").items():
        found[name].sessions = count
    return found


def test_the_state_is_read_per_server() -> None:
    found = servers()
    assert {s.address: (s.state, s.weight, s.health, s.sessions) for s in found.values()} == {
        "10.0.0.10:80": ("ready", 100, "up", 3),
        "10.0.0.11:80": ("maint", 100, "down", 0),
        "10.0.0.12:80": ("drain", 50, "up", 1),
    }


def test_what_already_holds_needs_no_command() -> None:
    assert pool.plan(servers(), {"10.0.0.10": 100}, ["10.0.0.12"], "app") == []


def test_a_server_joins_at_weight_0_until_its_health_check_passes() -> None:
    assert pool.plan(servers(), {"10.0.0.10": 100, "10.0.0.11:80": 20}, ["10.0.0.12"], "app") == [
        "set server app/10-0-0-11-80 weight 0",
        "set server app/10-0-0-11-80 state ready",
        "set server app/10-0-0-11-80 health down",
        "set server app/10-0-0-11-80 weight 20",
    ]


def test_weights_drains_and_the_rest_out_of_service() -> None:
    assert pool.plan(servers(), {"10.0.0.12": 100}, ["10.0.0.10"], "app") == [
        "set server app/10-0-0-10-80 state drain",
        "set server app/10-0-0-12-80 weight 100",
        "set server app/10-0-0-12-80 state ready",
    ]
    assert pool.plan(servers(), {}, [], "app") == [
        "set server app/10-0-0-10-80 state maint",
        "set server app/10-0-0-12-80 state maint",
    ]


@pytest.mark.parametrize(
    ("wanted", "drain", "message"),
    [
        ({"10.0.0.99": 100}, [], "has no server for 10.0.0.99"),
        ({"10.0.0.10": 100}, ["10.0.0.10"], "asked both to serve and to drain"),
        ({"10.0.0.10": 0}, [], "weights must be 1-256"),
        ({"10.0.0.10": 300}, [], "weights must be 1-256"),
    ],
)
def test_what_cannot_be_done_is_refused(wanted: dict, drain: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pool.plan(servers(), wanted, drain, "app")


def test_a_backend_without_state_is_an_error() -> None:
    with pytest.raises(ValueError, match="no server state for backend 'app'"):
        pool.parse_servers_state("Can't find backend.\n", "app")
