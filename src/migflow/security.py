"""Warnings about connections that expose a host or the guest's memory.

Two risks, each reported as one line before a run (docs/security.md):

* a host URI over plain TCP (``qemu+tcp://``): libvirt's control connection is
  unencrypted, and with ``auth_tcp = "none"`` unauthenticated; whoever reaches
  port 16509 controls the host as root;
* a migration stream in clear: without the ``tls`` flag, and unless the stream
  is tunnelled through libvirtd over an encrypted connection, the guest's whole
  RAM crosses the network readable by anyone on the path.

Inside the embedded lab (two network namespaces on this machine) both are
accepted and nothing is printed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .redact import redact_uri

__all__ = ["ENCRYPTED_TRANSPORTS", "is_local", "transport", "transport_warnings"]

#: libvirt transports that encrypt (``qemu+tls``, ``qemu+ssh`` ...)
ENCRYPTED_TRANSPORTS = frozenset({"tls", "ssh", "libssh", "libssh2"})
_LOOPBACK = ("localhost", "::1")


def transport(uri: str | None) -> str | None:
    """The transport of a libvirt URI: ``qemu+tcp://h/system`` -> ``tcp``,
    ``qemu:///system`` -> ``unix``, ``qemu://h/system`` -> ``tls`` (libvirt's
    default for a remote host), ``tcp://h`` -> ``tcp``; None when unparsable."""
    try:
        parts = urlsplit(str(uri or ""))
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme:
        return None
    if "+" in scheme:
        return scheme.split("+", 1)[1]
    if scheme == "tcp":  # a hypervisor-level migrate URI
        return "tcp"
    return "tls" if parts.hostname else "unix"


def is_local(uri: str | None) -> bool:
    """Whether the URI names this machine (no host, localhost or a loopback address)."""
    try:
        host = urlsplit(str(uri or "")).hostname
    except ValueError:
        return False
    return host is None or host in _LOOPBACK or host.startswith("127.")


def _stream_in_clear(flags: set[str], uris: Iterable[str]) -> bool:
    if "tls" in flags:
        return False
    if "tunnelled" in flags:  # through libvirtd: as safe as the connection between the daemons
        return not all(transport(u) in ENCRYPTED_TRANSPORTS for u in uris)
    return True


def transport_warnings(workflow: Any, hosts: Any, modes: dict | None = None) -> list[str]:
    """The warning lines (without a ``warning:`` prefix) for running ``workflow`` on ``hosts``.

    :param workflow: a loaded :class:`~migflow.workflow.model.Workflow` (scenarios expanded).
    :param hosts: a :class:`~migflow.registry.HostPair`; nothing is said for the embedded lab.
    :param modes: ``plugins.modes`` (name -> ModeSpec), for the flags each mode always sets.
    """
    if getattr(hosts, "lab", False):
        return []
    uris = [hosts.source, hosts.destination]
    out = []
    plain = [u for u in uris if transport(u) == "tcp"]
    if plain:
        shown = " and ".join(str(redact_uri(u)) for u in plain)
        out.append(
            f"{shown} {'uses' if len(plain) == 1 else 'use'} plain TCP: libvirt's connection is unencrypted and, "
            f'with auth_tcp = "none", gives anyone who reaches port 16509 root-equivalent control of the host; '
            f"use qemu+tls://HOST/system or qemu+ssh://USER@HOST/system (docs/security.md)"
        )
    if all(is_local(u) for u in uris):
        return out  # the stream never leaves this machine
    clear: list[str] = []
    for sc in getattr(workflow, "scenarios", None) or []:
        for use in sc.steps:
            if use.name != "migrate" or not isinstance(use.options, dict):
                continue
            name = str(use.options.get("mode", "?"))
            spec = (modes or {}).get(name)
            flags = set(getattr(spec, "flags", ()) or ()) | {str(f) for f in use.options.get("flags") or []}
            if _stream_in_clear(flags, uris) and name not in clear:
                clear.append(name)
    if clear:
        out.append(
            f"the migration stream of mode {', '.join(map(repr, clear))} carries the guest's RAM unencrypted between "
            f'the hosts; add flags = ["tls"] to the migrate step (migrate_tls and the libvirt PKI on both hosts), '
            f"or use p2p-tunnelled over qemu+tls:// URIs (docs/security.md)"
        )
    return out
