"""nginx in front of the service, checked as an operator and a client would."""

from __future__ import annotations

import json
import time

UNITS = ["nginx", "prometheus-nginx-exporter"]


def curl(host, args: str) -> tuple[int, dict[str, str], str]:
    """Run curl on the host; return (status, lower-cased headers, body)."""
    out = host.check_output(f"curl -sS -D - {args}")
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_packages(host):
    assert host.package("nginx").version.startswith("1.22.")
    assert host.package("prometheus-nginx-exporter").is_installed


def test_services_enabled_and_running(host):
    for unit in UNITS:
        service = host.service(unit)
        assert service.is_enabled, unit
        assert service.is_running, unit


def test_config_valid_and_default_site_gone(host):
    assert host.run("nginx -t").rc == 0
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    conf = host.file("/etc/nginx/nginx.conf")
    assert conf.mode == 0o644
    assert conf.contains("Ansible managed")


def test_ports(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:9180").is_listening
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening
    assert host.socket("tcp://127.0.0.1:9113").is_listening


def test_proxies_with_request_id_and_security_headers(host):
    status, headers, body = curl(host, "-H 'X-Request-ID: abc.123' -X POST -d '{}' http://127.0.0.1/predict")
    assert status == 200
    echoed = json.loads(body)
    assert echoed == {"path": "/predict", "method": "POST", "request_id": "abc.123", "real_ip": "127.0.0.1"}
    assert headers["x-request-id"] == "abc.123"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["server"] == "nginx"


def test_generates_request_id_when_missing_or_malformed(host):
    _, headers, body = curl(host, "-H 'X-Request-ID: bad id!' http://127.0.0.1/ready")
    generated = json.loads(body)["request_id"]
    assert len(generated) == 32
    assert headers["x-request-id"] == generated


def test_dead_upstream_is_routed_around(host):
    # 8002 refuses connections; every request must still be answered by 8001.
    statuses = {curl(host, "http://127.0.0.1/health")[0] for _ in range(6)}
    assert statuses == {200}


def test_a_prediction_whose_process_died_is_not_sent_to_another(host):
    """A POST that reached a process which then closed without answering is not replayed (it may be what
    killed it): the client gets a 502 saying so, and the other process never sees it."""
    host.check_output("systemd-run --unit upstream-8002 --collect /usr/local/bin/upstream 8002")
    try:
        time.sleep(1)
        answers = []
        for _ in range(6):
            answers.append(curl(host, "-X POST -d '{}' 'http://127.0.0.1/predict?answer=close'"))
            time.sleep(0.3)
        posts = json.loads(host.check_output("curl -sS http://127.0.0.1:8002/"))["posts"]
    finally:
        host.run("systemctl stop upstream-8002")
    failed = [json.loads(body) for status, _, body in answers if status == 502]
    # The echo upstream on 8001 answers every request; the one on 8002 closes without an answer.
    assert posts >= 1
    assert len(failed) == posts, answers
    assert {answer["error"] for answer in failed} == {"upstream_failed"}
    assert all(status in (200, 502) for status, _, _ in answers), answers


def test_a_draining_process_keeps_serving_predictions_while_probes_see_it_draining(host):
    """Every process draining: /ready answers their 503 (the balancer takes the host out), and predictions
    are still answered by them; a probe's 503 does not take a process out of the prediction pool."""
    host.check_output("systemctl stop echo-upstream")
    for port in (8001, 8002):
        host.check_output(f"systemd-run --unit upstream-{port} --collect /usr/local/bin/upstream {port} draining")
    try:
        time.sleep(1.5)  # also lets the per-client rate limit (5/s, burst 5) refill
        for _ in range(3):
            time.sleep(0.5)
            status, _, body = curl(host, "http://127.0.0.1/ready")
            assert status == 503, body
            assert json.loads(body)["error"] == "draining"
            status, _, body = curl(host, "-X POST -d '{}' http://127.0.0.1/predict")
            assert status == 200, body
    finally:
        host.run("systemctl stop upstream-8001 upstream-8002")
        host.check_output("systemd-run --unit echo-upstream /usr/local/bin/echo-upstream")
        time.sleep(1)


def test_body_over_limit_gets_json_413(host):
    status, headers, body = curl(
        host, "-X POST --data-binary @/etc/ssl/certs/ca-certificates.crt http://127.0.0.1/predict"
    )
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "payload_too_large"


def test_connection_limit_per_client_is_in_force(host):
    config = host.check_output("nginx -T 2>/dev/null")
    assert "limit_conn_zone $binary_remote_addr zone=modelfleet_conn_per_client" in config
    assert "limit_conn modelfleet_conn_per_client 32;" in config


def test_model_profile_only_on_metrics_port(host):
    status, _, body = curl(host, "http://127.0.0.1/model/profile")
    assert status == 404
    assert "served on port 9180" in json.loads(body)["detail"]
    status, _, body = curl(host, "http://127.0.0.1:9180/model/profile")
    assert status == 200
    assert json.loads(body)["path"] == "/model/profile"


def test_only_the_methods_of_the_api_pass(host):
    for method in ("DELETE", "PUT", "PATCH", "OPTIONS", "BREW", "PROPFIND"):
        status, headers, body = curl(host, f"-X {method} http://127.0.0.1/predict")
        assert status == 405, method
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"] == "method_not_allowed"
        assert headers["allow"] == "GET, HEAD, POST"
    time.sleep(1.5)  # the per-client rate limit (5/s, burst 5) refills before the allowed methods
    for method in ("GET", "POST"):
        assert curl(host, f"-X {method} http://127.0.0.1/predict")[0] == 200, method
    assert host.check_output("curl -sS -o /dev/null -w '%{http_code}' -I http://127.0.0.1/health") != "405"


def test_rate_limit_gets_json_429(host):
    # One burst, every answer kept: a burst is what trips the limit, and a sequence of single
    # requests on a busy machine may arrive slowly enough to stay under it.
    host.check_output(
        "rm -rf /tmp/rl && mkdir /tmp/rl && for i in $(seq 1 40); do "
        "curl -sS -D /tmp/rl/$i.head -o /tmp/rl/$i.body http://127.0.0.1/health & done; wait"
    )
    heads = {name: host.file(f"/tmp/rl/{name}.head").content_string for name in range(1, 41)}
    statuses = {name: int(head.split()[1]) for name, head in heads.items()}
    assert 200 in statuses.values()
    limited = [name for name, status in statuses.items() if status == 429]
    assert limited, statuses
    head = heads[limited[0]]
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)}
    body = host.file(f"/tmp/rl/{limited[0]}.body").content_string
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "error": "rate_limited",
        "detail": "more than 5 requests per second or 32 connections from this client; slow down and retry",
    }
    assert headers["x-request-id"]


def test_metrics_not_public_but_on_metrics_port(host):
    status, _, body = curl(host, "http://127.0.0.1/metrics")
    assert status == 404
    assert json.loads(body)["error"] == "not_found"
    status, _, body = curl(host, "http://127.0.0.1:9180/metrics")
    assert status == 200
    assert json.loads(body)["path"] == "/metrics"


def test_exporters_only_on_loopback_and_behind_the_metrics_listener(host):
    assert host.socket("tcp://127.0.0.1:9113").is_listening
    assert not host.socket("tcp://0.0.0.0:9113").is_listening
    status, _, body = curl(host, "http://127.0.0.1:9180/metrics/nginx")
    assert status == 200
    assert "nginx_up 1" in body


def test_metrics_listener_refuses_addresses_off_the_allow_list(host):
    # The container's own network address is not on the allow-list (loopback only in this scenario).
    address = host.check_output("hostname -I").split()[0]
    status, _, _ = curl(host, f"http://{address}:9180/metrics/nginx")
    assert status == 403


def test_json_access_log(host):
    curl(host, "-H 'X-Request-ID: log-check-1' http://127.0.0.1/health")
    lines = host.check_output("grep log-check-1 /var/log/nginx/access.log").splitlines()
    entry = json.loads(lines[-1])
    assert entry["status"] == 200
    assert entry["uri"] == "/health"
    assert entry["upstream"].startswith("127.0.0.1:")
    assert float(entry["upstream_time"].split(",")[-1].strip()) >= 0


def test_exporter_reads_stub_status(host):
    assert "Active connections" in host.check_output("curl -fsS http://127.0.0.1:8080/stub_status")
    metrics = host.check_output("curl -fsS http://127.0.0.1:9180/metrics/nginx")
    assert "nginx_up 1" in metrics
    assert "nginx_connections_accepted" in metrics


def test_exporter_unit_exposure_is_low(exposure):
    assert exposure("prometheus-nginx-exporter.service") <= 2.0


def test_nginx_unit_exposure(exposure):
    # nginx's master needs root to bind port 80 and switch users: 9.6 as Debian ships it.
    assert exposure("nginx.service") <= 4.5


def test_unit_is_hardened(host):
    props = host.check_output("systemctl show nginx -p NoNewPrivileges -p ProtectSystem")
    assert dict(line.split("=", 1) for line in props.splitlines()) == {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
    }
