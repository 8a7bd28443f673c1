#!/bin/sh
# migflow Linux guest: /init (PID 1, busybox sh).
#
# Mounts the pseudo filesystems, loads the virtio modules, starts the heartbeat
# owner (mf-dirty) first so heartbeats begin early, then the network (ip=) with
# the UDP echo responder, and the disk writer (disk_rate= > 0 and a disk).
# Its own output goes to the kernel console (console=ttyS1), never to ttyS0,
# which belongs to mf-dirty.

/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp

IP=
DISK_RATE=0
DISK_DEV=/dev/vda
for w in $(cat /proc/cmdline); do
    case "$w" in
        ip=*) IP=${w#ip=} ;;
        disk_rate=*) DISK_RATE=${w#disk_rate=} ;;
        disk_dev=*) DISK_DEV=${w#disk_dev=} ;;
    esac
done

# The heartbeat owner reads the status FIFO; the others write whole lines to it.
mkfifo /run/mfstatus
/bin/mf-dirty &

# Modules, in dependency order (written at build time).
for m in $(cat /etc/modules.order); do
    insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done

ip link set lo up
if [ -n "$IP" ]; then
    if ip link set eth0 up && ip addr add "$IP" dev eth0; then
        /bin/mf-echo &
    else
        echo "#warn no eth0 for ip=$IP" > /run/mfstatus
    fi
fi

if [ "$DISK_RATE" != 0 ]; then
    n=0
    while [ ! -b "$DISK_DEV" ] && [ $n -lt 20 ]; do sleep 0.1; n=$((n + 1)); done
    if [ -b "$DISK_DEV" ]; then
        /bin/mf-disk &
    else
        echo "#warn disk_rate=$DISK_RATE but no disk $DISK_DEV" > /run/mfstatus
    fi
fi

# Memory use once everything runs (the guest's footprint).
sleep 1
set -- $(free -k | sed -n 2p)
echo "#mem total_kib=$2 used_kib=$3 free_kib=$4 avail_kib=$7" > /run/mfstatus

# PID 1 must never exit.
while true; do wait; sleep 60; done
