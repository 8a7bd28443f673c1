"""Where the QEMU backend starts its QEMU processes: host URIs.

=====================================  =====================================================
URI                                    meaning
=====================================  =====================================================
``qemu+lab://mflab-a`` (or ``a``,      a host of the embedded lab: QEMU runs inside that host's
``198.18.0.1``)                        network and mount namespaces; the destination listens
                                       on the host's lab address
``qemu+tcp://198.18.0.1/system``       the lab's libvirt URIs name the same lab hosts, so a
                                       workflow without ``[hosts]`` (the default hosts are the
                                       lab's libvirt URIs) runs on the qemu backend unchanged;
                                       libvirtd itself is not used
``qemu+local://ADDRESS``               this machine, no namespace; the destination QEMU listens
                                       on ADDRESS (``qemu+local://127.0.0.1`` ->
                                       ``qemu+local://127.0.0.2`` migrates over loopback)
=====================================  =====================================================

Remote hosts over ssh are not supported (yet): the backend must be able to
start processes on both hosts and reach their QMP unix sockets.
"""

from __future__ import annotations

import ipaddress
import platform
from dataclasses import dataclass
from urllib.parse import urlsplit

from migflow.errors import HostError

__all__ = ["URI_HINT", "QemuHost", "is_lab", "resolve"]

URI_HINT = "the qemu backend takes qemu+lab://mflab-a (a lab host), the lab's libvirt URIs, or qemu+local://ADDRESS (this machine)"


@dataclass(frozen=True)
class QemuHost:
    """A place to run QEMU.

    :param uri: the URI as the workflow gave it.
    :param kind: ``"lab"`` or ``"local"``.
    :param name: the lab host's name (``mflab-a``) or the local address.
    :param address: the address the destination QEMU listens on for migration.
    """

    uri: str
    kind: str
    name: str
    address: str

    def argv(self, argv: list[str]) -> list[str]:
        """The command line that runs ``argv`` on this host (``nsenter`` into a lab host)."""
        if self.kind == "lab":
            from migflow_lab import hosts as lab

            return lab.host_argv(self.name, argv)
        return list(argv)

    def info(self) -> dict:
        return {"uri": self.uri, "kind": self.kind, "host": self.name, "address": self.address, "kernel": platform.release()}


def _lab_host(key: str, uri: str) -> QemuHost:
    from migflow_lab import hosts as lab

    for h in lab.LAB_HOSTS:
        if key in (h["name"], h["name"].rsplit("-", 1)[-1], h["address"]):
            return QemuHost(uri, "lab", h["name"], h["address"])
    raise HostError(f"{uri!r}: {key!r} is not a lab host", hint="lab hosts: " + ", ".join(h["name"] for h in lab.LAB_HOSTS))


def resolve(uri: str) -> QemuHost:
    """Turn a host URI into a :class:`QemuHost`; :class:`~migflow.errors.HostError` when unsupported."""
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError:
        raise HostError(f"{uri!r} is not a URI", hint=URI_HINT) from None
    if parts.scheme == "qemu+lab" and hostname:
        return _lab_host(hostname, uri)
    if parts.scheme == "qemu+local" and hostname:
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            raise HostError(f"{uri!r}: qemu+local needs an IP address the destination QEMU listens on", hint="e.g. qemu+local://127.0.0.1") from None
        return QemuHost(uri, "local", hostname, hostname)
    if is_lab(uri):  # the lab's libvirt URI: the same lab host, driven without libvirt
        return _lab_host(hostname, uri)
    raise HostError(f"the qemu backend cannot run QEMU on {uri!r}", hint=URI_HINT)


def is_lab(uri) -> bool:
    """True when ``uri`` names a lab host (``qemu+lab://...`` or one of the lab's libvirt URIs)."""
    if not isinstance(uri, str):
        return False
    if uri.startswith("qemu+lab://"):
        return True
    try:
        from migflow_lab import hosts as lab
    except ImportError:
        return False
    return lab.is_lab_uri(uri)
