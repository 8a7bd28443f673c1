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
from typing import Any
from urllib.parse import urlsplit

from migflow.errors import HostError
from migflow.registry import HostRunner

__all__ = ["URI_HINT", "QemuHost", "resolve"]

URI_HINT = "the qemu backend takes qemu+lab://mflab-a (a lab host), the lab's libvirt URIs, or qemu+local://ADDRESS (this machine)"


@dataclass(frozen=True)
class QemuHost:
    """A place to run QEMU.

    :param uri: the URI as the workflow gave it.
    :param kind: ``"local"`` (this machine) or ``"plugin"`` (a host a plugin runs commands on: the lab's).
    :param name: the host's name, or the local address.
    :param address: the address the destination QEMU listens on for migration.
    :param runner: how to run commands there (``kind == "plugin"``).
    """

    uri: str
    kind: str
    name: str
    address: str
    runner: HostRunner | None = None

    def argv(self, argv: list[str]) -> list[str]:
        """The command line that runs ``argv`` on this host."""
        return self.runner.argv(argv) if self.runner is not None else list(argv)

    @property
    def tls_dir(self) -> str | None:
        """The folder of QEMU x509 credentials for migration TLS on this host, when its plugin knows one."""
        return self.runner.tls_dir if self.runner is not None else None

    def info(self) -> dict:
        return {"uri": self.uri, "kind": self.kind, "host": self.name, "address": self.address, "kernel": platform.release()}


def resolve(uri: str, hook: Any) -> QemuHost:
    """Turn a host URI into a :class:`QemuHost`; :class:`~migflow.errors.HostError` when unsupported.

    ``qemu+local://ADDRESS`` is this machine; any other URI must be answered by
    a plugin's ``migflow_host_runner`` (the lab's, for its hosts).
    """
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError:
        raise HostError(f"{uri!r} is not a URI", hint=URI_HINT) from None
    if parts.scheme == "qemu+local" and hostname:
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            raise HostError(f"{uri!r}: qemu+local needs an IP address the destination QEMU listens on", hint="e.g. qemu+local://127.0.0.1") from None
        return QemuHost(uri, "local", hostname, hostname)
    runner = hook.migflow_host_runner(uri=uri) if hook is not None else None
    if runner is not None:
        return QemuHost(uri, "plugin", runner.name, runner.address, runner)
    if parts.scheme == "qemu+lab":
        raise HostError(
            f"the qemu backend cannot run QEMU on {uri!r}: no plugin manages that lab host",
            hint="is the lab plugin disabled (MIGFLOW_DISABLE_PLUGINS)? lab hosts: mflab-a, mflab-b",
        )
    raise HostError(f"the qemu backend cannot run QEMU on {uri!r}", hint=URI_HINT)
