"""The base of every host."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["ca-certificates", "curl", "tzdata", "procps", "iproute2", "unattended-upgrades"])
def test_packages(host, name):
    assert host.package(name).is_installed


def test_no_recommends_pulled(host):
    # unattended-upgrades recommends these; they must not come with it.
    assert not host.package("needrestart").is_installed
    assert not host.package("anacron").is_installed


def test_time_zone(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Berlin"
    assert host.file("/etc/timezone").content_string == "Europe/Berlin\n"
    assert host.check_output("date +%Z") in ("CET", "CEST")


def test_sysctl_profile(host):
    profile = host.file("/etc/sysctl.d/60-modelfleet.conf")
    assert profile.mode == 0o644
    settings = {}
    for line in profile.content_string.splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = " ".join(value.split())
    assert settings == {
        "net.core.somaxconn": "4096",
        "net.core.netdev_max_backlog": "4096",
        "net.ipv4.tcp_max_syn_backlog": "4096",
        "net.ipv4.ip_local_port_range": "10240 65000",
        "net.ipv4.tcp_tw_reuse": "1",
        "net.ipv4.tcp_fin_timeout": "15",
        "net.ipv4.tcp_keepalive_time": "300",
    }


def test_journald_limits(host):
    dropin = host.file("/etc/systemd/journald.conf.d/60-modelfleet.conf")
    assert dropin.contains("SystemMaxUse=500M")
    assert host.service("systemd-journald").is_running
    assert "SystemMaxUse=500M" in host.check_output("systemd-analyze cat-config systemd/journald.conf")


def test_unattended_upgrades_enabled(host):
    config = host.file("/etc/apt/apt.conf.d/20auto-upgrades")
    assert config.contains('APT::Periodic::Unattended-Upgrade "1";')
    assert host.run("apt-config dump | grep -q 'APT::Periodic::Unattended-Upgrade \"1\"'").rc == 0


def test_banner(host):
    assert host.file("/etc/issue.net").content_string == "Authorised use only.\n"
