"""The XML of a domain migflow creates (``[domain.create]``): no disk, a kernel, a serial port."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .ownership import owner_element

__all__ = ["domain_xml"]


def domain_xml(
    *, name: str, uuid: str, memory_mib: int, vcpus: int, virt_type: str, emulator: str | None, kernel: str, cmdline: str, serial_path: str | None, run_id: str
) -> str:
    serial = (
        f"<serial type='file'><source path={quoteattr(serial_path)} append='on'/><target port='0'/></serial>"
        if serial_path
        else "<serial type='pty'><target port='0'/></serial>"
    )
    emu = f"<emulator>{escape(emulator)}</emulator>" if emulator else ""
    return f"""<domain type='{virt_type}'>
  <name>{escape(name)}</name>
  <uuid>{uuid}</uuid>
  <metadata>{owner_element(run_id)}</metadata>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {emu}
    {serial}
    <memballoon model='none'/>
  </devices>
</domain>"""
