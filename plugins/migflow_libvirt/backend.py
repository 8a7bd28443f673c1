"""The libvirt backend: connections to two hosts, domains, migration legs, statistics.

Statistics are read on the source (the destination's view is incomplete):
``dom.jobStats()`` while a leg runs, and the ``JOB_COMPLETED`` event's
statistics when it ends (the source QEMU exits after a completed migration,
so ``query-migrate`` can no longer be asked).  Both are translated to QMP names
and units by :mod:`.stats`.
"""

from __future__ import annotations

import os
import platform
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

import libvirt

from migflow.backend import DEFAULT_TIMEOUT_ACTION, Backend
from migflow.errors import HostError, StepError
from migflow.postcopy import switch_reason
from migflow.redact import redact_secrets_of
from migflow.status import LegStatus

from .capture import QemuWatch, qmp
from .disks import create_disk, disk_path, remove_disk
from .domain_xml import domain_xml
from .events import ensure_event_loop
from .flags import CAPABILITY_FLAGS, COPY_STORAGE, FLAGS, PARAMETERS
from .ownership import METADATA_NS, parse_owner
from .restore import Seen, first_move, fixups
from .stats import job_clock, to_qmp

__all__ = ["FLAG_BITS", "SERIAL_DIR", "LibvirtBackend"]

#: migrate-step flag -> libvirt bit
FLAG_BITS = {name: getattr(libvirt, const) if const else 0 for name, const in FLAGS.items()}
#: QMP parameter -> libvirt typed migration parameter
PARAMETER_NAMES = {name: getattr(libvirt, const) for name, const in PARAMETERS.items()}

#: where created lab guests write their heartbeat (shared by both lab hosts)
SERIAL_DIR = "/var/tmp/migflow/serial"

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def _version(v: int) -> str:
    return f"{v // 1000000}.{(v // 1000) % 1000}.{v % 1000}"


def _msg(exc: libvirt.libvirtError) -> str:
    return (exc.get_error_message() or str(exc)).strip()


def _redact(uri: str) -> str:
    from migflow.redact import redact_uri

    return redact_uri(uri) or ""


#: libvirt learnt the multifd compression methods zlib and zstd and their levels in 9.4.0
MULTIFD_COMPRESSION_SINCE = 9_004_000
MULTIFD_LEVELS = {"multifd-zlib-level": "compression.zlib.level", "multifd-zstd-level": "compression.zstd.level"}

#: libvirt's TLS client errors (src/rpc/virnettlscontext.c, virnetclient.c) -> what to do
_TLS_HINTS = (
    (
        "TLS confirmation",
        "the host refused this client's certificate: pkipath's clientcert.pem and clientkey.pem must be signed by the CA the host trusts (docs/security.md)",
    ),
    (
        "server verification",
        "the host refused this client's certificate: pkipath's clientcert.pem and clientkey.pem must be signed by the CA the host trusts (docs/security.md)",
    ),
    (
        "Cannot read CA certificate",
        "a TLS client needs cacert.pem, clientcert.pem and clientkey.pem in its pkipath (default /etc/pki/CA and /etc/pki/libvirt; docs/security.md)",
    ),
    (
        "does not match the hostname",
        "the host's certificate does not name the address in the URI: connect by a name or IP its subjectAltName lists (docs/security.md)",
    ),
    ("known issuer", "the host's certificate is not signed by the CA in cacert.pem (docs/security.md)"),
)


def connect_hint(message: str) -> str:
    """What to do about a failed connection, by libvirt's message."""
    for words, hint in _TLS_HINTS:
        if words in message:
            return hint
    return "is libvirtd running and listening there? For the embedded lab: migflow lab status"


#: libvirt's and QEMU's migration errors that need more than their own words -> what to do
_MIGRATE_HINTS = (
    (
        "Failed to reserve port",
        (
            "libvirt 9.0 keeps an explicit disks_port (or migrate_uri port) reserved after a migration that used it, until its daemon "
            "restarts: give each run a port of its own, or leave the option out and let libvirt choose"
        ),
    ),
    (
        "cannot limit locked memory",
        (
            "zerocopy pins the guest's RAM: libvirt raises the QEMU process's RLIMIT_MEMLOCK, which needs CAP_SYS_RESOURCE on the host "
            "(a container or sandbox without it cannot use zerocopy)"
        ),
    ),
)


def migrate_hint(message: str) -> str | None:
    """What to do about a failed migration, by its message; None when the message says it all."""
    return next((hint for words, hint in _MIGRATE_HINTS if words in message), None)


def _postcopy_failed(state: int, reason: int) -> bool:
    """libvirt's reason for the domain's state (``dom.state()``) says post-copy failed after the switch (libvirt 8.5+)."""
    return (state, reason) in {
        (libvirt.VIR_DOMAIN_PAUSED, getattr(libvirt, "VIR_DOMAIN_PAUSED_POSTCOPY_FAILED", -1)),
        (libvirt.VIR_DOMAIN_RUNNING, getattr(libvirt, "VIR_DOMAIN_RUNNING_POSTCOPY_FAILED", -1)),
    }


def _no_domain(exc: Exception) -> bool:
    """libvirt says the domain is not (or no longer) there, as opposed to any other failure."""
    return isinstance(exc, libvirt.libvirtError) and exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def final_stats(job: dict | None, qemu: dict | None) -> dict | None:
    """A leg's final statistics in QMP shape: QEMU's own ``query-migrate`` when it
    was caught, completed by the QEMU values libvirt passed on (never libvirt's
    own clock: ``total-time`` and ``downtime`` stay absent without QEMU's reply)."""
    if not job and not qemu:
        return None
    out = to_qmp(job, completed=True) if job else {}
    for key, value in (qemu or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


#: how long a failed call waits for the source QEMU to say how its migration ended
LAST_STATUS_WAIT_S = 1.0


def with_qemu_last_status(message: str, last_status: str | None) -> str:
    """libvirt's error, completed by the source QEMU's own word when libvirt's words do not say it.

    An abort (``virsh domjobabort``) surfaced once on the loaded lab not as
    libvirt's "canceled by client" but as the destination QEMU's failure to
    load the stream the abort had cut ("load of migration failed").
    """
    if last_status == "cancelled" and "cancel" not in message.lower():
        return f"{message} (the source QEMU's migration was cancelled: by an abort such as virsh domjobabort, or by libvirt after an error elsewhere)"
    return message


def _record_watch(leg, watch: QemuWatch, returned: float | None) -> None:
    """What the QEMU watch saw, into the leg's measurements."""
    if "offline" in leg.flags:
        return  # no QEMU migration: nothing to watch, no statistics (stats_source stays NULL)
    last = watch.last_status()
    if last is not None:
        leg.extra["qemu_last_status"] = last
    leg.extra["stats_source"] = "qemu" if watch.final is not None else "libvirt"
    if watch.final is None and watch.final_error:
        leg.extra["qemu_final_missed"] = watch.final_error
    done = watch.first("MIGRATION", "completed")
    if watch.final_at is not None and done is not None:  # how close it was: after QEMU's "completed" reached the client
        leg.extra["qemu_final_after_ms"] = round((watch.final_at - done.arrived) * 1000.0, 3)
    if watch.in_force is not None:
        leg.extra["in_force"] = watch.in_force
    if returned is not None:
        leg.extra.update(watch.phases(leg.started_mono, returned))
    leg.extra.update(watch.postcopy(leg.started_mono))
    if watch.events:
        leg.extra["qemu_events"] = [
            {"event": e["event"], "status": e["status"], "qemu_time": e["qemu_time"], "arrived_ms": round((e["arrived"] - leg.started_mono) * 1000.0, 3)}
            for e in watch.timeline()
        ]


def _edited_xml(xml: str, edits: dict) -> str:
    """The domain XML with its <title>/<description> set as ``edits`` says (changes libvirt accepts
    for a destination definition: the guest's ABI stays the same)."""
    root = ET.fromstring(xml)
    for tag in ("title", "description"):
        if tag in edits:
            el = root.find(tag)
            if el is None:
                el = ET.Element(tag)
                root.insert(2, el)  # after <name> and <uuid>
            el.text = str(edits[tag])
    return ET.tostring(root, encoding="unicode")


def _option_params(dom, options: dict) -> dict:
    """The migrate step's virsh-like options as libvirt typed parameters."""
    params: dict = {}
    if options.get("dname"):
        params[libvirt.VIR_MIGRATE_PARAM_DEST_NAME] = options["dname"]
    if options.get("listen_address"):
        params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = options["listen_address"]
    if options.get("migrate_disks"):
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(options["migrate_disks"])
    if options.get("disks_port"):
        params[libvirt.VIR_MIGRATE_PARAM_DISKS_PORT] = int(options["disks_port"])
    if options.get("destination_xml") or options.get("persistent_xml"):
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        if options.get("destination_xml"):
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = _edited_xml(xml, options["destination_xml"])
        if options.get("persistent_xml"):
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = _edited_xml(xml, options["persistent_xml"])
    return params


class LibvirtBackend(Backend):
    name = "libvirt"

    def __init__(self, source_uri: str, destination_uri: str):
        super().__init__(source_uri, destination_uri)
        self.conns: dict[str, libvirt.virConnect] = {}

    # -- connections -------------------------------------------------------------
    def open(self) -> None:
        ensure_event_loop()
        for uri in (self.source_uri, self.destination_uri):
            self.conns[uri] = self._connect(uri)

    def _connect(self, uri: str) -> libvirt.virConnect:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            message = redact_secrets_of(_msg(exc), uri)
            raise HostError(f"cannot connect to {_redact(uri)}: {message}", hint=connect_hint(message)) from None
        try:
            conn.setKeepAlive(5, 3)
        except libvirt.libvirtError:
            pass
        return conn

    def conn(self, uri: str) -> libvirt.virConnect:
        """The connection to ``uri``, reopened when it died (a restarted daemon)."""
        conn = self.conns.get(uri)
        try:
            if conn is not None and conn.isAlive():
                return conn
        except libvirt.libvirtError:
            pass
        self.conns[uri] = self._connect(uri)
        return self.conns[uri]

    def close(self) -> None:
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception:
                pass
        self.conns.clear()

    def reserve(self, holder):
        from .reservation import reserve

        return reserve({uri: self.conn(uri) for uri in (self.source_uri, self.destination_uri)}, holder)

    def host_info(self) -> dict:
        info: dict[str, Any] = {}
        for role, uri in (("source", self.source_uri), ("destination", self.destination_uri)):
            try:
                conn = self.conn(uri)
                caps = ET.fromstring(conn.getCapabilities())
                entry: dict[str, Any] = {
                    "uri": _redact(uri),
                    "hostname": conn.getHostname(),
                    "host_uuid": caps.findtext("host/uuid"),
                    "libvirt": _version(conn.getLibVersion()),
                    "hypervisor": conn.getType(),
                    "hypervisor_version": _version(conn.getVersion()),
                    "cpu_model": caps.findtext("host/cpu/model"),
                    "cpu_vendor": caps.findtext("host/cpu/vendor"),
                    "cpus": conn.getInfo()[2],
                    "free_memory_mib": round(conn.getFreeMemory() / 2**20, 1),
                }
                info[role] = entry
            except (libvirt.libvirtError, HostError, ET.ParseError) as exc:
                info[role] = {"uri": _redact(uri), "error": str(exc)}
        info["client"] = {"libvirt_python": libvirt.getVersion() and _version(libvirt.getVersion()), "kernel": platform.release()}
        return info

    # -- domains ---------------------------------------------------------------------
    def _lookup(self, conn, *, uuid=None, name=None):
        try:
            return conn.lookupByUUIDString(uuid) if uuid else conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if _no_domain(exc):
                return None
            raise

    def _where(self, uuid: str, unreachable: dict | None = None) -> dict[str, tuple[Any, Seen] | None]:
        """``{"source": (dom, Seen) or None, "destination": ...}`` by UUID on both hosts.

        Everything about a domain is read at once, and a domain that vanishes
        while it is read (an incoming migration torn down after an abort) is
        not there.  Hosts that cannot be asked are left out of the answer's
        truth: their error goes into ``unreachable[role]``.
        """
        found: dict[str, tuple[Any, Seen] | None] = {}
        for role, uri in (("source", self.source_uri), ("destination", self.destination_uri)):
            found[role] = None
            try:
                dom = self._lookup(self.conn(uri), uuid=uuid)
                if dom is not None:
                    state, reason = dom.state()
                    seen = Seen(_STATE_NAMES.get(state, "unknown"), bool(dom.isActive()), bool(dom.isPersistent()), _postcopy_failed(state, reason))
                    found[role] = (dom, seen)
            except (libvirt.libvirtError, HostError) as exc:
                if _no_domain(exc):
                    continue  # gone while we looked
                if unreachable is not None:
                    unreachable[role] = str(exc)
        return found

    def locate(self, uuid: str) -> dict:
        unreachable: dict = {}
        where = self._where(uuid, unreachable)
        return {role: ("unknown (host unreachable)" if role in unreachable else (v[1].state if v else None)) for role, v in where.items()}

    def prepare_domain(self, ctx, domain: dict, options: dict) -> dict:
        timeout = options.get("wait_timeout_s", 60)
        if "create" in domain:
            return self._create(ctx, domain["create"], timeout)
        src = self.conn(self.source_uri)
        key = {"uuid": domain["uuid"]} if "uuid" in domain else {"name": domain["name"]}
        what = key.get("uuid") or key.get("name")
        dom = self._lookup(src, **key)
        if dom is None:
            other = self._lookup(self.conn(self.destination_uri), **key)
            if other is not None:
                raise StepError(
                    f"domain {what!r} is not on the source host {_redact(self.source_uri)} but on the destination {_redact(self.destination_uri)}",
                    hint="swap --src and --dst, or migrate it back first (migflow recover)",
                )
            raise StepError(f"domain {what!r} exists on neither host", hint="check the name with: virsh -c URI list --all")
        state = _STATE_NAMES.get(dom.state()[0], "unknown")
        original = {
            "uuid": dom.UUIDString(),
            "name": dom.name(),
            "created": False,
            "host": "source",
            "state": state,
            "persistent": bool(dom.isPersistent()),
        }
        ctx.state["domain"] = original
        ctx.state["original"] = dict(original)
        if state == "shutoff":
            dom.create()
        elif state == "paused":
            dom.resume()
        self._wait_running(dom, timeout, None)
        return self._describe(dom, original)

    def _create(self, ctx, create: dict, timeout: float) -> dict:
        workload = dict(create.get("workload") or {})
        for uri in (self.source_uri, self.destination_uri):
            self._remove_orphans(ctx, self.conn(uri))
        src = self.conn(self.source_uri)
        dst = self.conn(self.destination_uri)
        kvm = all("<domain type='kvm'" in c.getCapabilities() for c in (src, dst))
        count = int(create.get("count", 1))
        local = self._on_this_machine(self.source_uri) and self._on_this_machine(self.destination_uri)
        domains: list[dict[str, Any]] = []
        started: list[Any] = []
        images = []
        for guest in range(1, count + 1):
            image = ctx.hook.migflow_guest_image(workload=workload, create=create, guest=guest)
            if image is None:
                raise StepError(
                    "no plugin provides a guest image for [domain.create]", hint="the built-in lab plugin does; is it disabled (MIGFLOW_DISABLE_PLUGINS)?"
                )
            images.append(image)
            virt_type = image.virt_type or ("kvm" if kvm else "qemu")
            # a name of its own: runs at once on one host pair never meet by name
            name = f"{create.get('name') or 'migflow-guest'}-{ctx.run_id}" + (f"-g{guest}" if count > 1 else "")
            uuid = str(uuidlib.uuid4())
            serial_path = console_path = None
            if image.heartbeat and local:  # the hosts share this machine's files: the guest's heartbeat is readable
                os.makedirs(SERIAL_DIR, exist_ok=True)
                serial_path = os.path.join(SERIAL_DIR, f"{uuid}.log")
                console_path = os.path.join(SERIAL_DIR, f"{uuid}.console.log")
            record: dict[str, Any] = {
                "uuid": uuid,
                "name": name,
                "guest": guest,
                "created": True,
                "host": "source",
                "state": "running",
                "persistent": False,
                "serial_path": serial_path,
                "console_path": console_path if image.console else None,
                "virt_type": virt_type,
                "address": image.address,
                "echo_port": image.echo_port,
                "disk": disk_path(uuid) if image.disk_mib else None,
                "disk_mib": image.disk_mib,
            }
            domains.append(record)
            ctx.state["domains"] = domains  # restore finds every guest started so far
            ctx.state["domain"] = domains[0]
            ctx.state["original"] = dict(domains[0])
            if record["disk"]:
                create_disk(self._runner(self.source_uri, "a disk"), record["disk"], image.disk_mib)
            xml = domain_xml(
                name=name,
                uuid=uuid,
                memory_mib=create.get("memory_mib", 256),
                vcpus=create.get("vcpus", 1),
                virt_type=virt_type,
                image=image,
                serial_path=serial_path,
                console_path=console_path,
                disk_path=record["disk"],
                run_id=ctx.run_id,
            )
            try:
                started.append(src.createXML(xml, 0))
            except libvirt.libvirtError as exc:
                raise StepError(f"could not start guest {name!r} on {_redact(self.source_uri)}: {_msg(exc)}") from None
        for dom, record in zip(started, domains, strict=True):
            self._wait_running(dom, timeout, record["serial_path"])
        image = images[0]
        info = self._describe(started[0], domains[0])
        info["guest"] = {
            "kernel": image.kernel,
            "initrd": image.initrd,
            "cmdline": image.cmdline,
            "workload": workload,
            "heartbeat": domains[0]["serial_path"],
            "address": image.address,
            "disk_mib": image.disk_mib,
        }
        if count > 1:
            info["guests"] = [{"name": d["name"], "uuid": d["uuid"], "heartbeat": d["serial_path"], "address": d["address"]} for d in domains]
        return info

    def _runner(self, uri: str, what: str):
        """How to run commands on the host behind ``uri`` (a plugin's answer), or a clear error."""
        runner = self.plugins.hook.migflow_host_runner(uri=uri) if self.plugins is not None else None
        if runner is None:
            raise StepError(
                f"cannot create {what} on {_redact(uri)}: migflow runs commands only on hosts a plugin manages (the lab's)",
                hint="use the lab, or give the guest no disk",
            )
        return runner

    def _on_this_machine(self, uri: str) -> bool:
        """Does the host behind ``uri`` share this machine's files and /proc (the lab's hosts)?"""
        runner = self.plugins.hook.migflow_host_runner(uri=uri) if self.plugins is not None else None
        return bool(runner is not None and runner.same_machine)

    def _remove_orphans(self, ctx, conn) -> None:
        """Remove domains left by runs whose migflow process is gone (their owner mark says so).

        Domains without a mark, and those of live runs (here or on another
        machine), are never touched (:mod:`.ownership`)."""
        for dom in conn.listAllDomains():
            try:
                owner = parse_owner(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
            except libvirt.libvirtError:
                continue  # no migflow mark, or it went away meanwhile
            if owner is None or owner.run_id == ctx.run_id or owner.alive() is not False:
                continue
            try:
                name = dom.name()
            except libvirt.libvirtError:
                continue
            done = self._remove(dom, "leftover")
            ctx.echo(
                f"removed {name}, left on {_redact(conn.getURI())} by run {owner.run_id} whose migflow process (pid {owner.pid}) is gone ({', '.join(done)})"
            )

    def _wait_running(self, dom, timeout: float, serial_path: str | None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            beating = serial_path is None or (os.path.exists(serial_path) and os.path.getsize(serial_path) > 64)
            if running and beating:
                return
            time.sleep(0.05)
        what = "its first heartbeat" if serial_path else "the running state"
        raise StepError(f"domain {dom.name()!r} did not reach {what} within {timeout:g} s")

    def _describe(self, dom, original: dict) -> dict:
        _state, max_mem, _mem, vcpus, _cpu = dom.info()
        xml = dom.XMLDesc(0)
        virt_type = ET.fromstring(xml).get("type")
        return {"virt_type": virt_type, **original, "memory_kib": max_mem, "vcpus": vcpus, "xml": xml}

    # -- capabilities and parameters ---------------------------------------------
    def _qmp(self, dom, command: str, arguments: dict | None = None) -> dict:
        try:
            return qmp(dom, command, arguments)
        except RuntimeError as exc:
            raise StepError(f"QMP {command} failed: {exc}") from None

    def _in_force(self, dom) -> dict:
        caps = {c["capability"]: c["state"] for c in self._qmp(dom, "query-migrate-capabilities")}
        params = self._qmp(dom, "query-migrate-parameters")
        params.pop("tls-creds", None), params.pop("tls-hostname", None), params.pop("tls-authz", None)
        return {"capabilities": caps, "parameters": params}

    def _domain_on_source(self, ctx):
        d = ctx.state.get("domain")
        if not d:
            raise StepError("no domain: put prepare-domain before this step")
        uri = self.source_uri if d.get("host") == "source" else self.destination_uri
        dom = self._lookup(self.conn(uri), uuid=d["uuid"])
        if dom is None:
            raise StepError(f"domain {d['name']!r} is no longer on {_redact(uri)}")
        return dom

    def _needs_libvirt(self, since: int, what: str) -> None:
        """A :class:`StepError` naming ``what``, the version it needs and the hosts' when a host's libvirt is older."""
        for uri in (self.source_uri, self.destination_uri):
            have = self.conn(uri).getLibVersion()
            if have < since:
                raise StepError(
                    f"{what} needs libvirt {_version(since)} or later; {_redact(uri)} runs libvirt {_version(have)}",
                    hint="the qemu backend sets it over QMP (docs/qemu-backend.md), or upgrade libvirt on both hosts",
                )

    def set_capabilities(self, ctx, capabilities: dict, parameters: dict) -> dict:
        dom = self._domain_on_source(ctx)
        ctx.state.setdefault("original_qmp", self._in_force(dom))
        flags: list[str] = []
        params: dict = {}
        methods: list[str] = []
        qmp_caps: dict = {}
        qmp_params: dict = {}
        for cap, on in capabilities.items():
            if cap in CAPABILITY_FLAGS:
                if on:
                    flag, method = CAPABILITY_FLAGS[cap]
                    flags.append(flag)
                    if method:
                        methods.append(method)
            else:
                qmp_caps[cap] = on
        for name, value in parameters.items():
            if name in PARAMETER_NAMES:
                params[PARAMETER_NAMES[name]] = value
            elif name == "max-bandwidth":
                params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max(1, round(value / 2**20))  # libvirt: MiB/s
            elif name == "max-postcopy-bandwidth":
                params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = max(1, round(value / 2**20))
            elif name == "multifd-compression":
                if value != "none":  # none: libvirt's default for parallel migration
                    self._needs_libvirt(MULTIFD_COMPRESSION_SINCE, f"multifd-compression = {value!r} (libvirt's compression method {value})")
                    methods.append(value)
            elif name in MULTIFD_LEVELS:
                self._needs_libvirt(MULTIFD_COMPRESSION_SINCE, f"{name} (libvirt's {MULTIFD_LEVELS[name]}, virsh --comp-{name.split('-')[1]}-level)")
                params[MULTIFD_LEVELS[name]] = value
            elif name == "downtime-limit":
                dom.migrateSetMaxDowntime(value, 0)
            else:
                qmp_params[name] = value
        if methods:
            params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] = methods if len(methods) > 1 else methods[0]
        if qmp_caps:
            self._qmp(dom, "migrate-set-capabilities", {"capabilities": [{"capability": c, "state": s} for c, s in qmp_caps.items()]})
        if qmp_params:
            self._qmp(dom, "migrate-set-parameters", qmp_params)
        ctx.state["migration"] = {"flags": flags, "params": params}
        return {
            "libvirt_flags": flags,
            "libvirt_params": params,
            "qmp_capabilities": qmp_caps,
            "qmp_parameters": qmp_params,
            "in_force_before_migration": self._in_force(dom),
        }

    # -- migration -----------------------------------------------------------------
    def migrate(self, ctx, leg, mode, options: dict) -> None:
        d = leg.domain or ctx.state.get("domain")
        if not d:
            raise StepError("no domain: put prepare-domain before migrate")
        sconn, dconn = self.conn(leg.source), self.conn(leg.destination)
        dom = self._lookup(sconn, uuid=d["uuid"])
        if dom is None:
            raise StepError(f"domain {d['name']!r} is not on {_redact(leg.source)}")
        extra = ctx.state.get("migration", {})
        for flag in extra.get("flags", []):
            if flag not in leg.flags:
                leg.flags.append(flag)
        bits = 0
        for flag in leg.flags:
            bits |= FLAG_BITS[flag]
        if d.get("disk") and any(f in leg.flags for f in COPY_STORAGE):
            # storage migration copies into an image the destination must already have (same size, same path)
            create_disk(self._runner(leg.destination, "the destination's disk image"), d["disk"], d["disk_mib"])
        params = dict(extra.get("params", {}))
        if options.get("migrate_uri") and mode.destination != "migrate-uri":
            params[libvirt.VIR_MIGRATE_PARAM_URI] = options["migrate_uri"]
        params.update(_option_params(dom, options))

        completed = threading.Event()
        state = leg.backend_state
        state.update(dom=dom, conn=sconn)

        def on_completed(_conn, _dom, stats, _opaque):
            state["completed_stats"] = dict(stats)
            completed.set()

        switch = options.get("postcopy_switch")
        state["postcopy_switch"] = switch

        def on_iteration(_conn, _dom, iteration, _opaque):
            threading.Thread(target=self._iteration_sample, args=(ctx, leg, iteration), daemon=True).start()

        callbacks = []
        for event, cb in ((libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, on_completed), (libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, on_iteration)):
            try:
                callbacks.append(sconn.domainEventRegisterAny(dom, event, cb, None))
            except libvirt.libvirtError:
                pass
        watch = QemuWatch(sconn, dom).start()
        state["watch"] = watch
        timer = None
        timeout = options.get("timeout")
        if timeout:
            timer = threading.Timer(timeout["seconds"], self._on_timeout, args=(ctx, leg, timeout.get("action", DEFAULT_TIMEOUT_ACTION)))
            timer.daemon = True
            timer.start()
        try:
            if mode.destination == "migrate-uri":
                target = options.get("migrate_uri") or f"tcp://{urlsplit(leg.destination).hostname}"
                dom.migrateToURI3(target, params, bits)
            elif "peer2peer" in leg.flags:
                dom.migrateToURI3(leg.destination, params, bits)
            else:
                dom.migrate3(dconn, params, bits)
        except libvirt.libvirtError as exc:
            leg.stop_clock()
            last_status = watch.last_status(wait=LAST_STATUS_WAIT_S)
            watch.close()
            _record_watch(leg, watch, None)
            message = with_qemu_last_status(_msg(exc), last_status)
            if state.get("timeout_action"):
                leg.extra["timeout_action"] = state["timeout_action"]  # the failed leg says which action fired too
                message = f"timed out after {(timeout or {}).get('seconds', 0):g} s ({state['timeout_action']}): {message}"
            raise StepError(message, hint=migrate_hint(message)) from None
        finally:
            if timer is not None:
                timer.cancel()
        leg.stop_clock()
        returned = leg.started_mono + (leg.wall_ms or 0.0) / 1000.0
        if "offline" not in leg.flags:  # an offline leg copies the definition: the guest runs on where it was
            d["host"] = "destination" if leg.destination == self.destination_uri else "source"
        leg.extra["arrived"] = self._arrived(dconn, d["uuid"])
        if "timeout_action" in state:
            leg.extra["timeout_action"] = state["timeout_action"]
        # The completed-job event carries libvirt's final statistics; it may trail the call slightly.
        completed.wait(10)
        watch.close()
        for cb in callbacks:
            try:
                sconn.domainEventDeregisterAny(cb)
            except libvirt.libvirtError:
                pass
        job = state.get("completed_stats")
        leg.final_stats = final_stats(job, watch.final)
        if job:
            leg.extra.update(job_clock(job))
        _record_watch(leg, watch, returned)

    def _arrived(self, conn, uuid: str) -> dict | None:
        """libvirt's view of the guest on the destination after a leg: its name (``dname``),
        persistence (``persistent``) and title (``destination_xml``); None when it is not there."""
        try:
            dom = self._lookup(conn, uuid=uuid)
            if dom is None:
                return None
            title = ET.fromstring(dom.XMLDesc(0)).findtext("title")
            return {"name": dom.name(), "persistent": bool(dom.isPersistent()), "active": bool(dom.isActive()), "title": title}
        except libvirt.libvirtError:
            return None

    def _iteration_sample(self, ctx, leg, iteration: int) -> None:
        stats = self.poll(leg)
        if stats is not None:
            ram = stats.setdefault("ram", {})
            ram["dirty-sync-count"] = max(iteration, ram.get("dirty-sync-count") or 0)
            ctx.emit_sample(leg, stats, kind="iteration")
        self._maybe_switch_to_postcopy(ctx, leg, iteration, (stats or {}).get("ram", {}).get("remaining"))

    def _maybe_switch_to_postcopy(self, ctx, leg, iteration: int, remaining: int | None) -> None:
        """``postcopy_switch``: after N passes, or when RAM still to send stopped shrinking."""
        reason = switch_reason(leg.backend_state, iteration, remaining)
        if reason is None:
            return
        try:
            leg.backend_state["dom"].migrateStartPostCopy(0)
        except libvirt.libvirtError as exc:
            leg.extra["postcopy_switch"] = {"reason": reason, "iteration": iteration, "error": _msg(exc)}
            ctx.echo(f"leg {leg.number}: could not switch to post-copy ({reason}): {_msg(exc)}")
            return
        leg.extra["postcopy_switch"] = {"reason": reason, "iteration": iteration, "requested_ms": round(leg.elapsed_ms(), 3)}
        ctx.echo(f"leg {leg.number}: switched to post-copy {reason}")
        ctx.emit_sample(leg, self.poll(leg) or {"status": "postcopy-requested"}, kind="postcopy")

    def _on_timeout(self, ctx, leg, action: str) -> None:
        dom = leg.backend_state.get("dom")
        if dom is None or leg.done.is_set():
            return
        leg.backend_state["timeout_action"] = action
        ctx.echo(f"leg {leg.number}: timeout reached, action {action}")
        try:
            if action == "abort":
                dom.abortJob()
            elif action == "suspend":
                dom.suspend()
            elif action == "postcopy":
                dom.migrateStartPostCopy(0)
        except libvirt.libvirtError as exc:
            ctx.echo(f"leg {leg.number}: timeout action {action} failed: {_msg(exc)}")

    def poll(self, leg) -> dict | None:
        dom, watch = leg.backend_state.get("dom"), leg.backend_state.get("watch")
        if dom is None or (watch is not None and watch.switching_over()):
            return None
        try:
            job = dom.jobStats()
        except libvirt.libvirtError:
            return None  # the domain left the source (an iteration event can arrive after the leg ended)
        if not job or job.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return to_qmp(job)

    def abort(self, leg) -> None:
        dom = leg.backend_state.get("dom")
        if dom is not None:
            dom.abortJob()

    # -- restore ---------------------------------------------------------------------
    def _seen(self, uuid: str, unreachable: dict | None = None) -> tuple[dict, dict[str, Seen | None]]:
        """(domain objects by role, what each host has) for the decisions of :mod:`.restore`."""
        where = self._where(uuid, unreachable)
        return {role: v[0] for role, v in where.items() if v}, {role: v[1] if v else None for role, v in where.items()}

    def restore(self, ctx, options: dict) -> dict:
        d = ctx.state.get("domain")
        if not d:
            return {"action": "none", "message": "no domain was prepared"}
        domains = ctx.state.get("domains") or [d]
        if len(domains) == 1:
            return self._restore_one(ctx, d, ctx.state.get("original", d), options)
        # several guests: each put back (or removed) on its own; lost when any is
        ends = [self._restore_one(ctx, g, g, options) for g in domains]
        end: dict = {"guests": ends, "found": {g["name"]: e.get("found") for g, e in zip(domains, ends, strict=True)}}
        end["actions"] = [f"{g['name']}: {a}" for g, e in zip(domains, ends, strict=True) for a in e.get("actions", [])]
        lost = [e["message"] for e in ends if e.get("lost")]
        if lost:
            end.update(lost=True, message="; ".join(lost))
        return end

    def _restore_one(self, ctx, d: dict, original: dict, options: dict) -> dict:
        unreachable: dict = {}
        doms, seen = self._seen(d["uuid"], unreachable)
        found = {role: v.state for role, v in seen.items() if v}
        end: dict = {"found": found, "actions": []}
        if unreachable and not found:
            end["unreachable"] = unreachable
            raise StepError(
                f"could not find domain {d['name']!r} ({d['uuid']}): " + "; ".join(f"{role} host unreachable: {err}" for role, err in unreachable.items()),
                hint="when the hosts are back: migflow recover, or check with virsh -c URI list --all",
            )
        move = first_move({**original, "created": d.get("created")}, seen, keep_created=bool(options.get("keep_created")))
        if move.action == "lost":
            end.update(lost=True, message=move.message)
            if d.get("created"):
                self._remove_disks(d, end)
            return end
        if move.action == "postcopy-failed":
            end["postcopy_failed"] = list(move.roles)
            raise StepError(
                move.message,
                hint=f"recover it with `virsh -c {_redact(self.source_uri)} migrate --live --p2p --postcopy --postcopy-resume "
                f"{d['name']} {_redact(self.destination_uri)}` while both halves exist (libvirt 8.5+), or destroy it on both hosts",
            )
        if move.action == "remove":
            for role in move.roles:
                end["actions"].extend(self._remove(doms[role], role))
            self._remove_disks(d, end)
            return end
        if move.action == "migrate-back":
            dom = doms["destination"]
            flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
            if original.get("persistent"):
                flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
            if move.resume_first:
                dom.resume()
                end["actions"].append("resumed on the destination")
            try:
                dom.migrateToURI3(self.source_uri, {}, flags)
            except libvirt.libvirtError as exc:
                raise StepError(f"could not migrate the domain back to the source: {_msg(exc)}") from None
            end["actions"].append("migrated back to the source")
            d["host"] = "source"
            doms, seen = self._seen(d["uuid"])
        todo = fixups(
            original,
            seen.get("source"),
            seen.get("destination"),
            any_leg_completed=any(leg.status == LegStatus.COMPLETED for leg in ctx.legs),
            settings_changed=bool(ctx.state.get("original_qmp")),
        )
        for action in todo:  # fixups names source actions only when a source domain was seen, and likewise the destination
            src: Any = doms.get("source")
            dst: Any = doms.get("destination")
            if action == "resume":
                src.resume()
                end["actions"].append("resumed on the source")
            elif action == "suspend":
                src.suspend()
                end["actions"].append("paused again, as found")
            elif action == "shut-off":
                src.destroy()
                end["actions"].append("shut off again, as found")
            elif action == "define":
                self.conn(self.source_uri).defineXML(src.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
                end["actions"].append("defined on the source again")
            elif action == "make-transient":
                src.undefine()
                end["actions"].append("made transient again on the source")
            elif action == "restore-settings":
                self._restore_qmp(src, ctx.state["original_qmp"])
                end["actions"].append("migration capabilities and parameters restored")
            elif action == "undefine-destination":
                dst.undefine()
                end["actions"].append("removed the leftover definition on the destination")
        end["end"] = {role: v[1].state for role, v in self._where(d["uuid"]).items() if v}
        return end

    def _remove_disks(self, d: dict, end: dict) -> None:
        """A created guest's disk images, on both hosts (a storage migration left a copy on each)."""
        if not d.get("disk"):
            return
        for role, uri in (("source", self.source_uri), ("destination", self.destination_uri)):
            try:
                remove_disk(self._runner(uri, "disks"), d["disk"])
                end["actions"].append(f"removed its disk image on {role}")
            except StepError as exc:
                end["actions"].append(f"could not remove its disk image on {role}: {exc.message}")

    def _remove(self, dom, role: str) -> list[str]:
        """Destroy and undefine; a domain that vanishes meanwhile (an incoming
        migration whose source gave up) is simply gone."""
        done = []
        try:
            persistent = dom.isPersistent()  # a transient domain is gone once destroyed
            if dom.isActive():
                dom.destroy()
                done.append(f"destroyed on {role}")
            if persistent:
                dom.undefine()
                done.append(f"undefined on {role}")
        except libvirt.libvirtError as exc:
            if not _no_domain(exc):
                raise
            done.append(f"gone from {role}")
        return done

    def _restore_qmp(self, dom, original: dict) -> None:
        caps = [{"capability": c, "state": s} for c, s in original.get("capabilities", {}).items()]
        try:
            if caps:
                self._qmp(dom, "migrate-set-capabilities", {"capabilities": caps})
            settable = {k: v for k, v in original.get("parameters", {}).items() if not isinstance(v, dict)}
            if settable:
                self._qmp(dom, "migrate-set-parameters", settable)
        except StepError:
            pass  # best effort: the next QEMU process starts with defaults anyway
