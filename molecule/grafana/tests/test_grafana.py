"""Grafana's configuration, provisioning and dashboards as written on the host (not installed here)."""

from __future__ import annotations

import configparser
import hashlib
import json

import yaml

DASHBOARDS = "/var/lib/grafana/dashboards/modelfleet"


def ini(host) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(host.file("/etc/grafana/grafana.ini").content_string)
    return parser


def test_grafana_is_not_installed_here(host):
    assert not host.package("grafana").is_installed


def test_grafana_ini_locks_the_door(host):
    config = ini(host)
    assert config["auth.anonymous"]["enabled"] == "false"
    assert config["users"]["allow_sign_up"] == "false"
    assert config["security"]["admin_password"] == '"""example-grafana-admin-password"""'
    assert config["analytics"]["reporting_enabled"] == "false"
    assert config["server"]["http_port"] == "3000"
    # Where the role makes the admin password the vault's is where Grafana keeps its users.
    assert config["database"]["path"] == "/var/lib/grafana/grafana.db"
    f = host.file("/etc/grafana/grafana.ini")
    assert f.mode == 0o640


def test_the_datasource_is_provisioned(host):
    provisioned = yaml.safe_load(host.file("/etc/grafana/provisioning/datasources/modelfleet.yml").content_string)
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus.internal:9090"
    assert source["isDefault"] is True


def test_the_dashboards_folder_is_provisioned(host):
    provisioned = yaml.safe_load(host.file("/etc/grafana/provisioning/dashboards/modelfleet.yml").content_string)
    (provider,) = provisioned["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS


def test_dashboards_are_json_and_query_the_provisioned_datasource(host):
    names = host.check_output(f"ls {DASHBOARDS}").split()
    assert names == ["modelfleet-hosts.json", "modelfleet-model.json", "modelfleet-service.json"]
    for name in names:
        dashboard = json.loads(host.file(f"{DASHBOARDS}/{name}").content_string)
        assert dashboard["uid"].startswith("modelfleet-")
        (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert source["query"] == "prometheus"
        for panel in dashboard["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert target["expr"].strip()


def test_the_admin_password_is_the_vaults_after_grafanas_first_start(host):
    # prepare left the database of a first start with another password; Grafana checks a login against
    # PBKDF2-HMAC-SHA256 (10,000 rounds, 50 bytes) of the password with the user's salt.
    query = (
        "import sqlite3; db = sqlite3.connect('/var/lib/grafana/grafana.db'); "
        "print(*db.execute(\"SELECT password, salt FROM user WHERE login = 'admin'\").fetchone())"
    )
    stored, salt = host.check_output("python3 -c %s", query).split()  # the query quoted as one argument
    assert salt == "F3FAxVm33R", "the user's salt is kept"
    vault = hashlib.pbkdf2_hmac("sha256", b"example-grafana-admin-password", salt.encode(), 10_000, 50).hex()
    first_start = hashlib.pbkdf2_hmac("sha256", b"the-first-start-password", salt.encode(), 10_000, 50).hex()
    assert stored == vault
    assert stored != first_start
