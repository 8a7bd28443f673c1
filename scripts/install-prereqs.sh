#!/bin/sh
# Install what the embedded two-host lab (migflow lab) and the test suite need
# on a fresh Debian 12 machine.  Run as root.  Idempotent; starts nothing.
# Fast when everything is there already: apt runs only for missing packages.
#
#   sudo scripts/install-prereqs.sh
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "install-prereqs.sh: run as root (sudo $0)" >&2
    exit 1
fi

# qemu-utils: qemu-img for the Linux guest's disks; lz4: unpacks its kernel for a
# faster boot; openssl: the TLS lab's CA and certificates; jq: the docs' examples;
# chromium: the report's
# browser check in the tests.
PACKAGES="qemu-system-x86 qemu-utils
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
    iproute2 util-linux procps lz4 openssl jq
    gcc libc6-dev libc6-dev-i386
    python3 python3-dev python3-pip python3-venv
    chromium"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi

# The Linux guest is built from two Debian packages fetched with `apt-get download`
# (not installed): apt must know them, which a machine that never ran `apt-get
# update` does not.
if ! apt-cache show linux-image-cloud-amd64 busybox-static >/dev/null 2>&1; then
    apt-get update -q
fi

# Without libvirt-daemon-system these do not exist, and libvirt's QEMU driver
# refuses to start ("Failed to parse user 'libvirt-qemu'") even when qemu.conf
# says user = "root".
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

# libvirtd -d needs its log folder.
install -d -m 0755 /var/log/libvirt
