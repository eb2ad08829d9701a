"""node_exporter, as an operator would check it on the host."""

from __future__ import annotations

UNITS = ["prometheus-node-exporter"]


def metrics(host) -> str:
    return host.check_output("curl -fsS http://127.0.0.1:9100/metrics")


def test_package_installed(host):
    pkg = host.package("prometheus-node-exporter")
    assert pkg.is_installed
    assert pkg.version.startswith("1.5.")


def test_recommends_not_installed(host):
    assert not host.package("prometheus-node-exporter-collectors").is_installed


def test_service_enabled_and_running(host):
    svc = host.service("prometheus-node-exporter")
    assert svc.is_enabled
    assert svc.is_running


def test_runs_as_unprivileged_user(host):
    user = host.user("prometheus")
    assert user.shell in ("/usr/sbin/nologin", "/bin/false")
    pid = int(host.check_output("systemctl show -p MainPID --value prometheus-node-exporter"))
    assert host.process.get(pid=pid).user == "prometheus"


def test_listens_on_configured_port(host):
    assert host.socket("tcp://127.0.0.1:9100").is_listening
    assert not host.socket("tcp://0.0.0.0:9100").is_listening


def test_metrics_endpoint(host):
    body = metrics(host)
    assert "node_exporter_build_info{" in body
    assert "node_systemd_unit_state{" in body, "the systemd collector is enabled by the scenario"


def test_disabled_collector_is_off(host):
    body = metrics(host)
    assert 'node_scrape_collector_success{collector="mdadm"}' not in body
    assert 'node_scrape_collector_success{collector="cpu"} 1' in body


def test_textfile_collector_publishes_files(host):
    directory = host.file("/var/lib/prometheus/node-exporter")
    assert directory.is_directory
    assert directory.mode == 0o755
    host.run_expect([0], "echo 'modelfleet_textfile_probe 42' > /var/lib/prometheus/node-exporter/probe.prom")
    try:
        assert "modelfleet_textfile_probe 42" in metrics(host)
    finally:
        host.run("rm -f /var/lib/prometheus/node-exporter/probe.prom")


def test_unit_exposure_is_low(exposure):
    assert exposure("prometheus-node-exporter.service") <= 2.0


def test_unit_is_hardened(host):
    dropin = host.file("/etc/systemd/system/prometheus-node-exporter.service.d/hardening.conf")
    assert dropin.exists
    assert dropin.mode == 0o644
    props = host.check_output(
        "systemctl show prometheus-node-exporter -p NoNewPrivileges -p ProtectSystem -p PrivateTmp"
    )
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert values == {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}
