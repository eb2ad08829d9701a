#!/usr/bin/env bash
# Prometheus' and Alertmanager's binaries for the controller (promtool test rules, amtool, and the
# real Prometheus the canary gate's tests query), unpacked from Debian's packages into
# .cache/prometheus-tools/bin: the same versions the hosts run, and no service installed here.
set -euo pipefail

dest=${1:-.cache/prometheus-tools}
packages=(prometheus prometheus-alertmanager)
log() { printf 'prometheus-tools: %s\n' "$*" >&2; }

if [ -x "$dest/bin/promtool" ] && [ -x "$dest/bin/amtool" ] && [ -x "$dest/bin/prometheus" ]; then
  log "present in $dest; nothing to do"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "needs Debian's apt-get to fetch ${packages[*]}; put promtool, amtool and prometheus in $dest/bin yourself"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
(cd "$work" && apt-get download -q "${packages[@]}" >/dev/null 2>&1) || {
  apt-get update -qq
  (cd "$work" && apt-get download -q "${packages[@]}" >/dev/null)
}
mkdir -p "$dest/bin"
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done
for tool in prometheus promtool prometheus-alertmanager amtool; do
  install -m 0755 "$work/root/usr/bin/$tool" "$dest/bin/$tool"
done
log "installed: $("$dest/bin/promtool" --version 2>&1 | head -1)"
