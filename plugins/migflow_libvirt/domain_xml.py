"""The XML of a domain migflow creates (``[domain.create]``): a kernel (and initrd), serial ports,
and the NIC and disk the guest image asks for."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from migflow.registry import GuestImage

from .ownership import owner_element

__all__ = ["domain_xml"]


def _serial(port: int, path: str | None) -> str:
    if path:
        return f"<serial type='file'><source path={quoteattr(path)} append='on'/><target port='{port}'/></serial>"
    return f"<serial type='pty'><target port='{port}'/></serial>"


def domain_xml(
    *,
    name: str,
    uuid: str,
    memory_mib: int,
    vcpus: int,
    virt_type: str,
    image: GuestImage,
    serial_path: str | None,
    console_path: str | None = None,
    disk_path: str | None = None,
    run_id: str,
) -> str:
    """The domain for one guest.

    :param serial_path: the first serial port's file (the guest's heartbeat), or None for a pty.
    :param console_path: the second serial port's file, when the image has a console.
    :param disk_path: the guest's qcow2 image on the host, when the image has a disk.
    """
    devices = [_serial(0, serial_path)]
    if image.console:
        devices.append(_serial(1, console_path))
    if image.disk_mib and disk_path:
        # cache='none': the host's page cache holds nothing the migration would have to flush
        devices.append(
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>"
            f"<source file={quoteattr(disk_path)}/><target dev='vda' bus='virtio'/></disk>"
        )
    if image.network:
        mac = f"<mac address={quoteattr(image.mac)}/>" if image.mac else ""
        devices.append(f"<interface type='bridge'><source bridge={quoteattr(image.network)}/>{mac}<model type='virtio'/></interface>")
    initrd = f"\n    <initrd>{escape(image.initrd)}</initrd>" if image.initrd else ""
    loader = f"\n    <loader type='rom' readonly='yes'>{escape(image.firmware)}</loader>" if image.firmware else ""
    return f"""<domain type='{virt_type}'>
  <name>{escape(name)}</name>
  <uuid>{uuid}</uuid>
  <metadata>{owner_element(run_id)}</metadata>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>{loader}
    <kernel>{escape(image.kernel)}</kernel>{initrd}
    <cmdline>{escape(image.cmdline)}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {chr(10).join("    " + d for d in devices).strip()}
    <memballoon model='none'/>
  </devices>
</domain>"""
