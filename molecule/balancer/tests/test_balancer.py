"""HAProxy as the fleet's balancer, checked as a client and an operator would: servers put in service,
weighted and drained at runtime without a reload, and no request lost across twenty changes, with
clients that keep their connections alive and clients that open one per request."""

from __future__ import annotations

import json
import time

UNITS = ["haproxy"]
SEQUENCE = True  # the tests change the runtime state in order
POOL = "modelfleet.fleet.haproxy_pool"
A, B, C, DEAD = "127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:8103", "127.0.0.1:8104"


def pool(host, check: bool = False, **args) -> dict:
    """The module's result (a failure has its ``msg``; testinfra leaves out the ``failed`` flag)."""
    params = " ".join(
        f"{key}='{','.join(value) if isinstance(value, list) else json.dumps(value)}'" for key, value in args.items()
    )
    return host.ansible(POOL, params, check=check, become=True)


def post(host, query: str = "") -> tuple[int, dict]:
    out = host.check_output(f"curl -sS -w '\\n%{{http_code}}' -X POST -d '{{}}' 'http://127.0.0.1/predict{query}'")
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else {}


def posts_seen(host) -> int:
    """POSTs the upstreams have received, all together."""
    return sum(json.loads(host.check_output(f"curl -sS http://{s}/ready"))["posts"] for s in (A, B, C))


def serving(host) -> dict[str, tuple[str, int]]:
    return {a: (s["state"], s["weight"]) for a, s in pool(host, check=True)["servers"].items()}


def test_package_service_and_config(host):
    assert host.package("haproxy").version.startswith("2.6.")
    service = host.service("haproxy")
    assert service.is_enabled
    assert service.is_running
    assert host.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:8404").is_listening


def test_unit_is_sandboxed(host, exposure):
    assert exposure("haproxy") <= 5.0


def test_every_server_starts_out_of_service_and_clients_get_json(host):
    status, body = post(host)
    assert status == 503
    assert body["error"] == "no_host_available"
    assert {state for state, _ in serving(host).values()} == {"maint"}


def test_check_mode_says_what_would_change_and_changes_nothing(host):
    result = pool(host, check=True, servers={A: 100})
    assert result["changed"] is True
    assert result["commands"] == [
        f"set server app/127-0-0-1-8101 {command}"
        for command in ("weight 0", "state ready", "health down", "weight 100")
    ]
    assert post(host)[0] == 503


def test_servers_take_traffic_at_their_weights(host):
    result = pool(host, servers={A: 100, B: 100, C: 50}, wait_up=True)
    assert result["changed"] is True, result
    assert pool(host, servers={A: 100, B: 100, C: 50})["changed"] is False
    answered = [post(host)[1]["model_version"] for _ in range(200)]
    counts = {port: answered.count(port) for port in ("8101", "8102", "8103")}
    expected = {"8101": 80, "8102": 80, "8103": 40}
    assert all(abs(counts[port] - n) <= 6 for port, n in expected.items()), counts


def test_an_address_the_backend_does_not_list_is_refused(host):
    result = pool(host, servers={"10.9.9.9:80": 10})
    assert result["changed"] is False
    assert "no server for 10.9.9.9:80" in result["msg"]
    assert serving(host)[A] == ("ready", 100)


def test_a_server_that_never_passes_its_check_is_reported(host):
    result = pool(host, servers={A: 100, B: 100, C: 50, DEAD: 10}, wait_up=True, timeout=4)
    assert "not passing their health check" in result["msg"]
    assert DEAD in result["msg"]
    # Never up, so it never took a request.
    assert all(post(host)[0] == 200 for _ in range(20))
    pool(host, servers={A: 100, B: 100, C: 50})


def test_drain_lets_requests_in_progress_finish(host):
    pool(host, servers={A: 100})
    host.run("rm -f /tmp/slow.code")
    host.check_output(
        "systemd-run --unit slow-request --collect sh -c "
        "\"curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' 'http://127.0.0.1/predict?sleep=8' "
        '> /tmp/slow.tmp && mv /tmp/slow.tmp /tmp/slow.code"'
    )
    time.sleep(0.5)
    began = time.monotonic()
    result = pool(host, servers={B: 100}, drain=[A], wait_drained=True)
    assert result["changed"] is True
    # The drain returned only once the request in progress (8 s) was answered, and answered in full.
    assert host.file("/tmp/slow.code").exists, f"the drain returned after {time.monotonic() - began:.1f} s: {result}"
    assert host.file("/tmp/slow.code").content_string == "200"
    assert result["waited"] > 0
    assert serving(host)[A][0] == "maint"


def test_only_requests_no_host_processed_are_sent_again(host):
    pool(host, servers={A: 100, B: 100})
    # A 502 says a process died serving the request: it goes to no other host.
    before = posts_seen(host)
    status, body = post(host, "?answer=502")
    assert status == 502
    assert body["status"] == 502
    assert posts_seen(host) - before == 1
    # A 503 (no process took it) and a connection closed without an answer are sent again: 1 + 3 retries.
    for query in ("?answer=503", "?answer=close"):
        before = posts_seen(host)
        status, _ = post(host, query)
        assert status in (502, 503), (query, status)
        assert posts_seen(host) - before == 4, query


# One client connection, two POSTs of SIZE bytes; each body is sent after its headers, apart, as Python's
# http.client sends them (here 50 ms apart, so that the body always comes after HAProxy read the headers).
KEPT_ALIVE_CLIENT = """
import http.client, json, sys, time
body = b"{" + b" " * (int(sys.argv[1]) - 2) + b"}"
connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
statuses = []
for query in ("", "?answer=503"):
    connection.putrequest("POST", "/predict" + query)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    time.sleep(0.05)
    connection.send(body)
    response = connection.getresponse()
    response.read()
    statuses.append(response.status)
print(json.dumps(statuses))
"""


def test_a_request_on_a_kept_alive_connection_is_sent_again_too(host):
    """A 503 to the second request on a kept-alive client connection is resent like any other, a batch of
    40 KB too: HAProxy waits for the whole request (up to its 64 KB buffer) before it sends it, so it still
    holds all of it to send again."""
    pool(host, servers={A: 100})
    host.check_output(f"cat > /root/kept-alive-client.py <<'EOF'\n{KEPT_ALIVE_CLIENT}\nEOF")
    for size in (2, 2, 40_000):
        before = posts_seen(host)
        statuses = json.loads(host.check_output(f"python3 /root/kept-alive-client.py {size}"))
        assert statuses == [200, 503]
        assert posts_seen(host) - before == 1 + (1 + 3), f"the 503 to a {size}-byte request was not sent again"


def test_no_request_fails_across_twenty_changes(host):
    """Twenty changes (weights, drains, hosts in and out) under both kinds of client, every request counted."""
    pool(host, servers={A: 100, B: 100})
    host.run("rm -f /tmp/load.json /tmp/load.stop")
    host.check_output("systemd-run --unit load --collect /usr/local/bin/load-until-stopped 80 240")
    time.sleep(2)
    plans = [
        ({A: 100, B: 100, C: 20}, []),  # a canary joins at a tenth
        ({A: 100, B: 100, C: 100}, []),  # promoted
        ({B: 100, C: 100}, [A]),  # an old host drained
        ({C: 100}, [B]),
        ({C: 100, A: 30}, []),
    ]
    try:
        for change in range(20):
            servers, drain = plans[change % len(plans)]
            result = pool(host, servers=servers, drain=drain, wait_drained=True, wait_up=True)
            assert "msg" not in result, result
        time.sleep(2)
    finally:
        host.check_output("touch /tmp/load.stop")
    deadline = time.monotonic() + 120
    while not host.file("/tmp/load.json").exists and time.monotonic() < deadline:
        time.sleep(1)
    outcome = json.loads(host.file("/tmp/load.json").content_string)
    print(f"20 balancer changes: {outcome}")
    assert outcome["failures"] == {}, outcome
    assert set(outcome["clients"]) == {"keep-alive", "new connection"}
    assert all(total > 500 for total, _ in outcome["clients"].values()), outcome
    assert set(outcome["versions"]) == {"8101", "8102", "8103"}


def test_the_state_survives_a_restart(host):
    before = serving(host)
    host.check_output("systemctl restart haproxy")
    time.sleep(3)
    assert serving(host) == before
    assert post(host)[0] == 200


def test_metrics_for_prometheus(host):
    metrics = host.check_output("curl -sS http://127.0.0.1:8404/metrics")
    assert 'haproxy_server_http_responses_total{proxy="app",server="127-0-0-1-8103",code="2xx"}' in metrics
    assert json.loads(host.check_output("curl -sS http://127.0.0.1:8404/"))["error"] == "not_found"
