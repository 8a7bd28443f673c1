"""A user's own domain on a lab host, for the tests that prove migflow leaves it alone
(test_failures.py, test_shared_hosts.py): persistent, running the lab's guest kernel."""

from __future__ import annotations


def define_users_domain(conn, name: str, kernel: str, cmdline: str, accel: str):
    """Define and start a persistent domain on ``conn``'s host; the domain object."""
    xml = f"""<domain type='{"kvm" if accel == "kvm" else "qemu"}'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
      <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><cmdline>{cmdline}</cmdline></os>
      <devices><serial type='pty'/><memballoon model='none'/></devices></domain>"""
    dom = conn.defineXML(xml)
    dom.create()
    return dom


def remove_users_domain(conns, name: str) -> None:
    """Destroy and undefine the domain ``name`` wherever it is among ``conns`` (the test's own clean-up)."""
    import libvirt

    for conn in conns:
        try:
            d = conn.lookupByName(name)
            if d.isActive():
                d.destroy()
            d.undefine()
        except libvirt.libvirtError:
            pass
