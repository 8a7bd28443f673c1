#!/bin/sh
# Install what the embedded two-host lab (migflow lab) and the test suite need
# on a fresh Debian 12 machine.  Run as root.  Idempotent; starts nothing.
#
#   sudo scripts/install-prereqs.sh
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "install-prereqs.sh: run as root (sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    qemu-system-x86 qemu-utils \
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config \
    iproute2 util-linux procps \
    gcc libc6-dev libc6-dev-i386 \
    python3 python3-dev python3-pip python3-venv \
    chromium

# Without libvirt-daemon-system these do not exist, and libvirt's QEMU driver
# refuses to start ("Failed to parse user 'libvirt-qemu'") even when qemu.conf
# says user = "root".
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

# libvirtd -d needs its log folder.
install -d -m 0755 /var/log/libvirt

echo "install-prereqs.sh: done (nothing was started; bring the lab up with: migflow lab up)"
