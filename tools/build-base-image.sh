#!/usr/bin/env bash
# Build the systemd base image every container of modelfleet starts from (Molecule instances,
# the local fleet), without any image registry: debootstrap Debian bookworm, then `docker import`.
# Users who can pull images may build tools/base-image/Dockerfile instead (see README).
set -euo pipefail

image="${MODELFLEET_BASE_IMAGE:-modelfleet/debian-systemd:bookworm}"
mirror="${MODELFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=python3,python3-apt,python3-venv,systemd,systemd-sysv,dbus,sudo,iproute2,ca-certificates,procps,curl

log() { printf 'build-base-image: %s\n' "$*" >&2; }

if [ "${1:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  log "$image is present; nothing to do (--force rebuilds)"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root="$(mktemp -d /var/tmp/modelfleet-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT

log "debootstrap bookworm into $root (about 90 s)"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >/dev/null

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
# Containers never install recommends (they pull units that fail without hardware).
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$root/etc/apt/apt.conf.d/90modelfleet-no-recommends"
# An empty machine-id makes systemd generate a fresh one in every container at boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Units that have no meaning in a container.
for unit in getty@tty1.service systemd-remount-fs.service systemd-firstboot.service \
            sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# No package lists in the image: mark them as never updated so the first apt task refreshes them.
touch -d @0 "$root/var/lib/apt/lists"

log "importing as $image"
tar -C "$root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  - "$image" >/dev/null
log "built $image"
