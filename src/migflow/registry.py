"""What plugins contribute: steps, backends and migration modes.

Plugins hand these to the ``register`` callback of the matching hook
(see :mod:`migflow.hookspecs`).  Everything here is plain data so that
``migflow plugins`` can list it and ``migflow validate`` can check a
workflow without importing heavy libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BackendSpec", "GuestImage", "HostPair", "ModeSpec", "StepSpec"]


@dataclass(frozen=True)
class StepSpec:
    """A step a workflow can ``use``.

    :param name: the name workflows write in ``use = "..."``.
    :param run: ``run(ctx, options)`` executes the step for one run; raise to fail it.
    :param options_schema: JSON Schema (draft 2020-12) for the step's options
        (every key of the ``[[steps]]`` table except ``use``).  Unknown keys are
        rejected unless the schema says otherwise.
    :param always_run: run even after an earlier step failed, or on Ctrl-C/SIGTERM
        (like ``restore``).
    :param arm: optional ``arm(ctx, options)`` called for every step of the run
        before the first step executes: a step that observes others (``collect-qmp``)
        subscribes here.
    :param description: one line for ``migflow plugins`` and the docs.
    :param override: replace a step of the same name that another plugin
        registered earlier (a built-in's too).  Without it such a registration
        is refused: a plugin cannot replace ``restore`` by accident and lose
        its ``always_run``.
    """

    name: str
    run: Callable[..., Any]
    options_schema: dict = field(default_factory=lambda: {"type": "object", "additionalProperties": False})
    always_run: bool = False
    arm: Callable[..., Any] | None = None
    description: str = ""
    override: bool = False


@dataclass(frozen=True)
class BackendSpec:
    """A hypervisor backend.

    :param name: what ``backend = "..."`` in a workflow selects.
    :param factory: ``factory(source_uri, destination_uri)`` returns an object that
        implements :class:`migflow.backend.Backend`.  Imported lazily: keep heavy
        imports inside the factory.
    :param description: one line.
    :param default_mode: the mode a migrate step without ``mode`` uses, so a
        workflow switches backend with its ``backend = "..."`` line alone.
    :param flags: the migration flags the backend understands (``live``,
        ``peer2peer`` ...).  A mode of this backend with any other flag is
        refused by ``migflow validate``; empty: not checked.
    :param override: replace a backend of the same name registered earlier.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    default_mode: str | None = None
    flags: tuple[str, ...] = ()
    override: bool = False


@dataclass(frozen=True)
class ModeSpec:
    """A migration mode, such as ``p2p`` or ``zstack``.

    :param name: what ``mode = "..."`` in the migrate step selects.
    :param backend: the backend this mode belongs to.
    :param flags: the backend's flags this mode always sets (for libvirt: names
        of ``VIR_MIGRATE_*`` flags without the prefix, lower case: ``live``, ``peer2peer`` ...).
    :param destination: how the destination is addressed: ``"uri"`` (the libvirt
        URI of the destination host) or ``"migrate-uri"`` (a hypervisor-level URI
        such as ``tcp://HOST``, as ``virsh migrate --direct`` takes).
    :param incompatible: option names (flags, capabilities) that cannot be used
        with this mode, each mapped to the reason; rejected at validation time.
    :param description: one line.
    :param override: replace a mode of the same name registered earlier.
    """

    name: str
    backend: str
    flags: tuple[str, ...] = ()
    destination: str = "uri"
    incompatible: dict[str, str] = field(default_factory=dict)
    description: str = ""
    override: bool = False


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest the backend can start for ``[domain.create]``.

    :param kernel: path to a multiboot/ELF kernel booted with ``<os><kernel>``.
    :param cmdline: kernel command line carrying the workload parameters.
    :param heartbeat: True when the guest writes a heartbeat to its first serial port.
    :param initrd: an initramfs to boot with the kernel (``<os><initrd>``).
    :param console: the guest's kernel messages go to a second serial port (kept
        apart from the heartbeat on the first).
    :param disk_mib: give the guest a virtio-blk disk of this size (a qcow2 image
        on the source host), or None for no disk.
    :param network: the name of a bridge on each host to plug a virtio-net NIC
        into (the lab's VM network), or None for no NIC.
    :param address: the guest's IP address on that network (``198.18.0.130``).
    :param echo_port: the UDP port the guest echoes datagrams on.
    :param virt_type: force the domain type (``qemu``: TCG) when this guest cannot
        run on the hosts' KVM; None: KVM where the hosts have it.
    :param mac: the NIC's MAC address (stable, so a migrated guest keeps it).
    :param firmware: a firmware ROM to boot with instead of the machine's default
        (SeaBIOS), e.g. ``/usr/share/qemu/qboot.rom``; it must exist on both hosts.
    """

    kernel: str
    cmdline: str = ""
    heartbeat: bool = False
    initrd: str | None = None
    console: bool = False
    disk_mib: int | None = None
    network: str | None = None
    address: str | None = None
    echo_port: int | None = None
    virt_type: str | None = None
    mac: str | None = None
    firmware: str | None = None


@dataclass(frozen=True)
class HostPair:
    """Source and destination URIs, with whether they are the embedded lab's."""

    source: str
    destination: str
    lab: bool = False


@dataclass(frozen=True)
class HostRunner:
    """How to run commands on a machine that a plugin manages (answer of
    :func:`~migflow.hookspecs.migflow_host_runner`).

    :param name: the host's name (``mflab-a``).
    :param address: the host's address on the migration network.
    :param argv: ``argv(command)`` returns the command line that runs ``command``
        (a list of strings) on that host, for :func:`subprocess.run` or ``Popen``.
    :param same_machine: the host shares this machine's kernel, clock and files
        (the embedded lab): /proc readings and heartbeat files are usable.
    :param tls_dir: a folder on that host with QEMU's x509 credentials for the
        migration stream (``ca-cert.pem``, ``server-cert.pem``, ``server-key.pem``,
        ``client-cert.pem``, ``client-key.pem``: libvirt's ``migrate_tls_x509_cert_dir``),
        or None when the plugin has none.
    """

    name: str
    address: str
    argv: Callable[[list[str]], list[str]]
    same_machine: bool = False
    tls_dir: str | None = None
