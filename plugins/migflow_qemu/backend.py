"""The QEMU backend: QEMU processes started by migflow, driven over QMP, no libvirt.

Per leg: start the destination QEMU with ``-incoming defer`` on the
destination host, give it the same migration capabilities and parameters as
the source, ``migrate-incoming tcp:ADDRESS:0`` (QEMU picks a free port, read
back from ``query-migrate``), then ``migrate`` on the source.  The client wall
time runs from sending ``migrate`` to seeing ``completed`` (the ``MIGRATION``
event, or a ``query-migrate`` poll).  The source QEMU stays up, paused in
``postmigrate``, so its final ``query-migrate`` is read directly and stored
raw as the leg's final statistics; then the source QEMU is quit.  The way back
starts a fresh incoming QEMU on the first host.

Statistics are QMP's own: no translation.  Like libvirt, the backend switches
on the ``events`` capability (one ``MIGRATION_PASS`` event per iteration
gives an ``iteration`` sample) and lifts QEMU's default bandwidth cap of
128 MiB/s to libvirt's default (unlimited) unless the workflow sets
``max-bandwidth``, so the two backends migrate under the same rules.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import threading
import time
import uuid as uuidlib
from urllib.parse import urlsplit

from migflow.backend import DEFAULT_TIMEOUT_ACTION, Backend
from migflow.errors import HostError, PrerequisiteError, StepError
from migflow.postcopy import switch_reason

from .features import FLAG_CAPABILITIES, LEVELS_APPLIED_SINCE, TLS_FILES, UNSUPPORTED_FLAGS, missing_message, version_tuple
from .hosts import QemuHost, resolve
from .process import QemuProcess
from .qmp import QMPConnectionError, QMPError

__all__ = ["FLAG_CAPABILITIES", "LIBVIRT_MAX_BANDWIDTH", "RUN_DIR", "SERIAL_DIR", "TLS_OBJECT", "UNSUPPORTED_FLAGS", "QemuBackend", "accel"]

QEMU = os.environ.get("MIGFLOW_QEMU_BINARY", "qemu-system-x86_64")
#: where guests write their heartbeat (the same folder as the libvirt backend's)
SERIAL_DIR = "/var/tmp/migflow/serial"
#: QMP sockets and QEMU logs, one folder per run
RUN_DIR = "/var/tmp/migflow/qemu"
#: libvirt's default migration bandwidth (unlimited: INT64_MAX MiB/s rounded to MiB), in bytes/s.
#: QEMU's own default is 128 MiB/s.
LIBVIRT_MAX_BANDWIDTH = (2**63 - 1) // 2**20 * 2**20

#: flags the backend handles itself (the others switch a capability on, FLAG_CAPABILITIES)
_OWN_FLAGS = ("live", "tls")
#: ids of the tls-creds-x509 objects the backend adds to a QEMU, per endpoint
TLS_OBJECT = {"server": "migflow-tls-server", "client": "migflow-tls-client"}
_TERMINAL = ("completed", "failed", "cancelled")
#: QMP run states in which the guest lives in that process
_HOLDS_GUEST = ("running", "paused", "prelaunch", "debug", "suspended", "watchdog", "io-error", "finish-migrate", "restore-vm", "save-vm", "colo")


def accel() -> str:
    """``kvm`` when /dev/kvm answers, else ``tcg``; ``MIGFLOW_QEMU_ACCEL`` (or the lab's
    ``MIGFLOW_LAB_ACCEL``) forces it."""
    from migflow.kvm import accel as probe

    return probe("MIGFLOW_QEMU_ACCEL", "MIGFLOW_LAB_ACCEL")


def _qmp_call(proc: QemuProcess, command: str, arguments: dict | None = None, timeout: float = 30.0):
    try:
        return proc.client.execute(command, arguments, timeout=timeout)
    except (QMPError, QMPConnectionError) as exc:
        raise StepError(f"QEMU on {proc.host.name}: {exc}") from None


def _phases(leg) -> dict:
    """The client's wall time split at QEMU's migration start and end (as in the libvirt backend)."""
    setup, end = leg.backend_state.get("setup_arrived"), leg.backend_state.get("end_arrived")
    if setup is None or end is None or leg.wall_ms is None:
        return {}
    returned = leg.started_mono + leg.wall_ms / 1000.0
    return {
        "wall_before_qemu_ms": round((setup - leg.started_mono) * 1000.0, 3),
        "wall_qemu_ms": round((end - setup) * 1000.0, 3),
        "wall_after_qemu_ms": round(max(0.0, returned - end) * 1000.0, 3),
    }


def _has_cap_ipc_lock(pid: int) -> bool:
    """Does process ``pid`` have CAP_IPC_LOCK in its effective set?  Then the kernel does not
    count the pages MSG_ZEROCOPY pins against its RLIMIT_MEMLOCK (``mm_account_pinned_pages``)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return False
    return bool(eff & (1 << 14))  # CAP_IPC_LOCK = 14


def _postcopy_times(leg) -> dict:
    """When QEMU entered post-copy (``MIGRATION`` ``postcopy-active``) and how long post-copy lasted, on the client's clock."""
    active, end = leg.backend_state.get("postcopy_arrived"), leg.backend_state.get("end_arrived")
    if active is None:
        return {}
    out = {"postcopy_started_ms": round((active - leg.started_mono) * 1000.0, 3)}
    if end is not None:
        out["postcopy_ms"] = round((end - active) * 1000.0, 3)
    return out


class QemuBackend(Backend):
    name = "qemu"

    def __init__(self, source_uri: str, destination_uri: str):
        super().__init__(source_uri, destination_uri)
        self.hosts: dict[str, QemuHost] = {}
        #: run host URI -> the QEMU process migflow started there (at most one per host)
        self.procs: dict[str, QemuProcess] = {}
        self.spent: list[QemuProcess] = []  # ended processes, for restore's report
        self.run_dir: str | None = None
        self._host_info: dict | None = None
        self._count = 0
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> None:
        for uri in (self.source_uri, self.destination_uri):
            self.hosts[uri] = resolve(uri, self.plugins.hook if self.plugins is not None else None)
        if shutil.which(QEMU) is None:
            raise PrerequisiteError(f"{QEMU} not found", hint="apt-get install qemu-system-x86 (or set MIGFLOW_QEMU_BINARY)")
        for host in self.hosts.values():
            host.argv(["true"])  # a lab host that is down raises HostError here

    def close(self) -> None:
        for proc in list(self.procs.values()):
            if not proc.kept:
                proc.stop()
        for proc in self.procs.values():
            if proc.qmp is not None:
                proc.qmp.close()
        if self.run_dir and not any(p.kept for p in self.procs.values()):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _role(self, uri: str) -> str:
        return "source" if uri == self.source_uri else "destination"

    def reserve(self, holder):
        from .reservation import reserve

        return reserve({uri: host.address for uri, host in self.hosts.items()}, holder)

    def host_info(self) -> dict:
        info: dict = {}
        for uri, host in self.hosts.items():
            entry = {**host.info(), "hypervisor": "QEMU", "accel": accel()}
            proc = self.procs.get(uri)
            try:
                if proc is not None and proc.alive():
                    v = _qmp_call(proc, "query-version")
                    q = v["qemu"]
                    entry.update(hypervisor_version=f"{q['major']}.{q['minor']}.{q['micro']}", qemu_package=v.get("package"), version_from="query-version")
                else:
                    out = subprocess.run(host.argv([QEMU, "--version"]), check=False, capture_output=True, text=True, timeout=30).stdout
                    m = re.search(r"version (\d+\.\d+\.\d+)(?: \((.*)\))?", out)
                    if m:
                        entry.update(hypervisor_version=m.group(1), qemu_package=m.group(2), version_from=f"{QEMU} --version")
            except (StepError, HostError, OSError, subprocess.SubprocessError) as exc:
                entry["error"] = str(exc)
            info[self._role(uri)] = entry
        info["client"] = {"python": platform.python_version(), "kernel": platform.release(), "qmp_client": "migflow_qemu.qmp"}
        self._host_info = info  # what the run recorded; prepare_domain refines the source's entry
        return info

    def _record_source_version(self, ctx, proc: QemuProcess) -> None:
        """The run records the hosts before any QEMU runs (``--version``); once the source QEMU
        answers, its own ``query-version`` replaces that in ``runs.host_versions``."""
        info = self._host_info
        if info is None or not isinstance(info.get("source"), dict):
            return
        try:
            v = _qmp_call(proc, "query-version")
        except StepError:
            return
        q = v["qemu"]
        info["source"].update(hypervisor_version=f"{q['major']}.{q['minor']}.{q['micro']}", qemu_package=v.get("package"), version_from="query-version")
        ctx.recorder.set_run(host_versions=info, environment={"hosts": info})

    # -- processes ----------------------------------------------------------------
    def _start(self, ctx, uri: str, incoming: bool) -> QemuProcess:
        d = ctx.state["domain"]
        host = self.hosts[uri]
        if self.run_dir is None:
            self.run_dir = os.path.join(RUN_DIR, ctx.run_id)
            os.makedirs(self.run_dir, exist_ok=True)
        with self._lock:
            self._count += 1
            n = self._count
        qmp_path = os.path.join(self.run_dir, f"{n}.qmp")
        log_path = os.path.join(self.run_dir, f"{n}-{host.name}.log")
        argv = [
            QEMU,
            "-name",
            d["name"],
            "-uuid",
            d["uuid"],
            "-M",
            "pc",
            "-accel",
            d["accel"],
            "-m",
            str(d["memory_mib"]),
            "-smp",
            str(d["vcpus"]),
            "-kernel",
            d["kernel"],
            "-append",
            d["cmdline"],
            "-qmp",
            f"unix:{qmp_path},server=on,wait=off",
            "-display",
            "none",
            "-nodefaults",
            "-no-user-config",
        ]
        if d.get("firmware"):
            argv += ["-bios", d["firmware"]]
        if d.get("serial_path"):
            argv += ["-chardev", f"file,append=on,id=s0,path={d['serial_path']}", "-serial", "chardev:s0"]
        if incoming:
            argv += ["-incoming", "defer"]
        proc = QemuProcess(host, host.argv(argv), qmp_path, log_path, self._role(uri))
        proc.start()
        return proc

    # -- steps ----------------------------------------------------------------------
    def prepare_domain(self, ctx, domain: dict, options: dict) -> dict:
        if "create" not in domain:
            raise StepError(
                "the qemu backend starts its own guest: describe it in [domain.create]",
                hint='[domain] name/uuid name libvirt domains; use backend = "libvirt" for those',
            )
        create = domain["create"]
        timeout = options.get("wait_timeout_s", 60)
        workload = dict(create.get("workload") or {})
        image = ctx.hook.migflow_guest_image(workload=workload, create=create, guest=1)
        if image is None:
            raise StepError(
                "no plugin provides a guest image for [domain.create]", hint="the built-in lab plugin does; is it disabled (MIGFLOW_DISABLE_PLUGINS)?"
            )
        if image.initrd or image.disk_mib or image.network:
            raise StepError("the qemu backend boots the tiny guest only (no initrd, disk or NIC)", hint='use backend = "libvirt" for guest = "linux"')
        name = f"{create.get('name') or 'migflow-guest'}-{ctx.run_id}"
        if "," in name:
            raise StepError(f"domain name {name!r}: QEMU's -name cannot contain a comma")
        uid = str(uuidlib.uuid4())
        serial_path = None
        if image.heartbeat:
            os.makedirs(SERIAL_DIR, exist_ok=True)
            serial_path = os.path.join(SERIAL_DIR, f"{uid}.log")
        d = {
            "uuid": uid,
            "name": name,
            "created": True,
            "host": "source",
            "state": "running",
            "persistent": False,
            "serial_path": serial_path,
            "virt_type": accel(),
            "accel": accel(),
            "memory_mib": create.get("memory_mib", 256),
            "vcpus": create.get("vcpus", 1),
            "kernel": image.kernel,
            "firmware": image.firmware,
            "cmdline": image.cmdline,
        }
        ctx.state["domain"] = d
        ctx.state["original"] = dict(d)
        proc = self._start(ctx, self.source_uri, incoming=False)
        self.procs[self.source_uri] = proc
        self._wait_running(proc, timeout, serial_path)
        self._record_source_version(ctx, proc)
        return {
            "backend": "qemu",
            "uuid": uid,
            "name": name,
            "created": True,
            "state": "running",
            "accel": d["accel"],
            "memory_mib": d["memory_mib"],
            "vcpus": d["vcpus"],
            "pid": proc.pid,
            "argv": proc.argv,
            "guest": {"kernel": image.kernel, "cmdline": image.cmdline, "workload": workload, "heartbeat": serial_path},
        }

    def _wait_running(self, proc: QemuProcess, timeout: float, serial_path: str | None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise StepError(f"QEMU on {proc.host.name} exited: {proc.log_tail() or 'no message'}")
            running = proc.status() == "running"
            beating = serial_path is None or (os.path.exists(serial_path) and os.path.getsize(serial_path) > 64)
            if running and beating:
                return
            time.sleep(0.05)
        what = "its first heartbeat" if serial_path else "the running state"
        raise StepError(f"the guest did not reach {what} within {timeout:g} s")

    def set_capabilities(self, ctx, capabilities: dict, parameters: dict) -> dict:
        proc = self._guest_process(ctx)
        ctx.state["migration"] = {"capabilities": dict(capabilities), "parameters": dict(parameters)}
        self._apply(proc, capabilities, parameters)
        return {"qmp_capabilities": capabilities, "qmp_parameters": parameters, "in_force_before_migration": self._in_force(proc)}

    def _guest_process(self, ctx) -> QemuProcess:
        d = ctx.state.get("domain")
        if not d:
            raise StepError("no domain: put prepare-domain first")
        uri = self.source_uri if d.get("host", "source") == "source" else self.destination_uri
        proc = self.procs.get(uri)
        if proc is None or not proc.alive():
            raise StepError(f"the guest's QEMU on {self.hosts[uri].name} is not running")
        return proc

    def _apply(self, proc: QemuProcess, capabilities: dict, parameters: dict) -> None:
        """Set capabilities and parameters, then read them back: a name this QEMU lacks stops
        the step (naming the QEMU that brings it), and so does a value QEMU accepted but
        does not report (QEMU 7.2 keeps multifd-zlib-level at 1 whatever it is told), so a
        sweep never records a setting that was not in force."""
        self._check_offered(proc, capabilities, parameters)
        if capabilities:
            _qmp_call(proc, "migrate-set-capabilities", {"capabilities": [{"capability": c, "state": bool(s)} for c, s in capabilities.items()]})
        if parameters:
            _qmp_call(proc, "migrate-set-parameters", dict(parameters))
        self._check_in_force(proc, capabilities, parameters)

    def _version(self, proc: QemuProcess) -> str:
        if "version" not in proc.facts:
            q = _qmp_call(proc, "query-version")["qemu"]
            proc.facts["version"] = f"{q['major']}.{q['minor']}.{q['micro']}"
        return proc.facts["version"]

    def _check_offered(self, proc: QemuProcess, capabilities: dict, parameters: dict) -> None:
        """Every capability and parameter asked for exists in this QEMU (``query-migrate-capabilities``;
        ``query-migrate-parameters``, and the QMP schema for a parameter it does not list)."""
        missing = []
        if capabilities:
            offered = {c["capability"] for c in _qmp_call(proc, "query-migrate-capabilities")}
            missing += [("capability", c) for c in capabilities if c not in offered]
        unlisted = [p for p in parameters if p not in _qmp_call(proc, "query-migrate-parameters")] if parameters else []
        if unlisted:
            settable = self._settable_parameters(proc)
            missing += [("parameter", p) for p in unlisted if p not in settable]
        if missing:
            version = self._version(proc)
            raise StepError("; ".join(missing_message(kind, name, proc.host.name, version) for kind, name in missing))

    def _settable_parameters(self, proc: QemuProcess) -> set[str]:
        """The members of migrate-set-parameters' argument in this QEMU's QMP schema."""
        if "settable" not in proc.facts:
            schema = {e["name"]: e for e in _qmp_call(proc, "query-qmp-schema")}
            arg_type = (schema.get("migrate-set-parameters") or {}).get("arg-type")
            proc.facts["settable"] = {m["name"] for m in (schema.get(arg_type) or {}).get("members", [])}
        return proc.facts["settable"]

    def _check_in_force(self, proc: QemuProcess, capabilities: dict, parameters: dict) -> None:
        wrong = []
        if capabilities:
            state = {c["capability"]: c["state"] for c in _qmp_call(proc, "query-migrate-capabilities")}
            wrong += [(c, bool(v), state.get(c), "query-migrate-capabilities") for c, v in capabilities.items() if state.get(c) != bool(v)]
        if parameters:
            reported = _qmp_call(proc, "query-migrate-parameters")
            # a parameter QEMU does not list back (block-bitmap-mapping when unset) cannot be compared
            wrong += [(p, v, reported[p], "query-migrate-parameters") for p, v in parameters.items() if p in reported and reported[p] != v]
        if not wrong:
            return
        version = self._version(proc)
        message = "; ".join(
            f"QEMU {version} on {proc.host.name} accepted {name} = {want!r} but reports {got!r} ({query}): the migration would run with {got!r}"
            for name, want, got, query in wrong
        )
        hint = None
        if {"multifd-zlib-level", "multifd-zstd-level"} & {w[0] for w in wrong} and version_tuple(version) < version_tuple(LEVELS_APPLIED_SINCE):
            hint = (
                f"QEMU before {LEVELS_APPLIED_SINCE} does not apply multifd-zlib-level and multifd-zstd-level (upstream fix: "
                f"'migration: Properly apply migration compression level parameters', 2024): only level 1 can be measured on QEMU {version}"
            )
        raise StepError(message, hint=hint)

    def _in_force(self, proc: QemuProcess) -> dict:
        caps = _qmp_call(proc, "query-migrate-capabilities")
        return {"capabilities": sorted(c["capability"] for c in caps if c["state"]), "parameters": _qmp_call(proc, "query-migrate-parameters")}

    # -- TLS and locked memory -----------------------------------------------------------
    def _tls_dir(self, uri: str) -> str:
        """The host's folder of QEMU x509 credentials; a clear refusal when its URI names none."""
        host = self.hosts[uri]
        if not host.tls_dir:
            raise StepError(
                f"the tls flag needs QEMU x509 credentials on {host.name}, and {host.uri} names no folder of them",
                hint="qemu+local:// hosts have none: use the lab's hosts (qemu+lab://mflab-a, qemu+lab://mflab-b) or the libvirt backend",
            )
        return host.tls_dir

    def _tls_creds(self, proc: QemuProcess, uri: str, endpoint: str) -> str:
        """Add (once per QEMU) a ``tls-creds-x509`` object for ``endpoint`` (server on the
        destination, client on the source) reading the host's folder, peers verified; its id."""
        ident = TLS_OBJECT[endpoint]
        if ident in proc.tls_objects:
            return ident
        host, folder = self.hosts[uri], self._tls_dir(uri)
        files = [os.path.join(folder, f) for f in TLS_FILES[endpoint]]
        try:
            out = subprocess.run(
                host.argv(["sh", "-c", 'for f; do [ -r "$f" ] || echo "$f"; done', "sh", *files]), check=False, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise StepError(f"cannot check the TLS credentials on {host.name}: {exc}") from None
        unreadable = out.stdout.split()
        if out.returncode != 0 or unreadable:
            raise StepError(
                f"TLS on {host.name}: QEMU's {endpoint} credentials need {', '.join(TLS_FILES[endpoint])} in {folder}; "
                f"missing or unreadable: {', '.join(os.path.basename(f) for f in unreadable) or out.stderr.strip()}"
            )
        _qmp_call(proc, "object-add", {"qom-type": "tls-creds-x509", "id": ident, "endpoint": endpoint, "dir": folder, "verify-peer": True})
        proc.tls_objects.add(ident)
        return ident

    def _allow_memlock(self, proc: QemuProcess, need: int) -> dict:
        """zero-copy-send pins the guest pages it sends (Linux MSG_ZEROCOPY), counted against
        the sending process's RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK; like libvirt for
        ``--zerocopy``, let the source QEMU lock as much as the guest's RAM (``need`` bytes)."""
        import resource

        host, pid = proc.host, proc.pid
        if pid is None or (host.runner is not None and not host.runner.same_machine):
            raise StepError(f"zerocopy: cannot raise the locked-memory limit of QEMU on {host.name}, which is not this machine")
        inf = resource.RLIM_INFINITY
        soft, hard = resource.prlimit(pid, resource.RLIMIT_MEMLOCK)
        record = {"needed": need, "before": [soft, hard], "cap_ipc_lock": _has_cap_ipc_lock(pid)}
        if record["cap_ipc_lock"] or soft == inf or soft >= need:  # the kernel does not count, or the limit suffices
            return {**record, "after": [soft, hard]}
        new = (need, hard if hard == inf or hard >= need else need)
        try:
            resource.prlimit(pid, resource.RLIMIT_MEMLOCK, new)
        except (OSError, ValueError) as exc:
            raise StepError(
                f"zerocopy: QEMU on {host.name} must be allowed to lock the guest's RAM ({need // 2**20} MiB; its RLIMIT_MEMLOCK is "
                f"{soft // 2**10} KiB, hard limit {'unlimited' if hard == inf else f'{hard // 2**10} KiB'}), and raising it failed: {exc}",
                hint="run migflow as root, or raise the hard limit (ulimit -l, /etc/security/limits.conf) to at least the guest's memory",
            ) from None
        return {**record, "after": list(resource.prlimit(pid, resource.RLIMIT_MEMLOCK))}

    # -- migration --------------------------------------------------------------------
    def _leg_settings(self, ctx, leg) -> tuple[dict, dict]:
        bad = [f for f in leg.flags if f in UNSUPPORTED_FLAGS]
        if bad:
            raise StepError(f"the qemu backend cannot use flag(s) {', '.join(bad)}: " + "; ".join(UNSUPPORTED_FLAGS[f] for f in bad))
        unknown = [f for f in leg.flags if f not in FLAG_CAPABILITIES and f not in _OWN_FLAGS]
        if unknown:  # never ignore a flag silently
            raise StepError(f"the qemu backend does not know flag(s) {', '.join(unknown)}")
        extra = ctx.state.get("migration", {})
        caps = {"events": True}
        caps.update({FLAG_CAPABILITIES[f]: True for f in leg.flags if f in FLAG_CAPABILITIES})
        caps.update(extra.get("capabilities", {}))
        params = {"max-bandwidth": LIBVIRT_MAX_BANDWIDTH}
        params.update(extra.get("parameters", {}))
        return caps, params

    def migrate(self, ctx, leg, mode, options: dict) -> None:
        d = ctx.state.get("domain")
        if not d:
            raise StepError("no domain: put prepare-domain before migrate")
        src = self.procs.get(leg.source)
        if src is None or not src.alive():
            raise StepError(f"the guest's QEMU is not running on {self.hosts[leg.source].name}")
        if leg.destination in self.procs and self.procs[leg.destination].alive():
            raise StepError(f"a QEMU of this run still runs on {self.hosts[leg.destination].name}")
        caps, params = self._leg_settings(ctx, leg)
        address, port = self.hosts[leg.destination].address, 0
        if options.get("migrate_uri"):
            u = urlsplit(options["migrate_uri"])
            if u.scheme != "tcp" or not u.hostname:
                raise StepError(f"migrate_uri {options['migrate_uri']!r}: the qemu backend takes tcp://HOST[:PORT]")
            address, port = u.hostname, u.port or 0
        tls = "tls" in leg.flags
        if tls:
            for uri in (leg.source, leg.destination):
                self._tls_dir(uri)  # before starting anything: a host without credentials is refused
        state = leg.backend_state
        state["postcopy_switch"] = options.get("postcopy_switch")
        t0 = time.monotonic()
        dst = self._start(ctx, leg.destination, incoming=True)
        state["dst"] = dst
        try:
            src_params, dst_params = dict(params), dict(params)
            if tls:
                dst_params["tls-creds"] = self._tls_creds(dst, leg.destination, "server")
                src_params["tls-creds"] = self._tls_creds(src, leg.source, "client")
                src_params["tls-hostname"] = self.hosts[leg.destination].address  # the name the server's certificate must carry
            elif src.tls_objects:  # TLS in an earlier leg of this QEMU: not in this one
                src_params.update({"tls-creds": "", "tls-hostname": ""})
            self._apply(dst, caps, dst_params)
            _qmp_call(dst, "migrate-incoming", {"uri": f"tcp:{address}:{port}"})
            listening = _qmp_call(dst, "query-migrate").get("socket-address") or []
            port = int(next((a["port"] for a in listening if a.get("type") == "inet"), port))
            self._apply(src, caps, src_params)
            if caps.get("zero-copy-send"):
                leg.extra["memlock"] = self._allow_memlock(src, int(d["memory_mib"]) * 2**20)
            leg.extra["in_force"] = self._in_force(src)
            if tls:
                leg.extra["tls"] = {
                    role: {k: v for k, v in self._in_force(p)["parameters"].items() if k.startswith("tls-")} | {"dir": self.hosts[uri].tls_dir}
                    for role, p, uri in (("source", src, leg.source), ("destination", dst, leg.destination))
                }
        except StepError:
            dst.stop()
            raise
        leg.extra["destination_start_ms"] = round((time.monotonic() - t0) * 1000.0, 3)
        leg.extra["migrate_uri"] = f"tcp:{address}:{port}"
        leg.extra["pids"] = {"source": src.pid, "destination": dst.pid}
        timer = None
        timeout = options.get("timeout")
        if timeout:
            timer = threading.Timer(timeout["seconds"], self._on_timeout, args=(ctx, leg, src, timeout.get("action", DEFAULT_TIMEOUT_ACTION)))
            timer.daemon = True
        src.client.events()  # forget older events
        state["src"] = src
        # The client wall time started before the destination QEMU, as libvirt's includes
        # starting it: wall_before_qemu_ms holds that part (destination_start_ms of it).
        try:
            if timer is not None:
                timer.start()
            _qmp_call(src, "migrate", {"uri": leg.extra["migrate_uri"]})
            status = self._wait(ctx, leg, src)
        except StepError:
            leg.stop_clock()
            dst.stop()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        leg.stop_clock()
        if status == "completed":
            # QEMU announces `completed` before it computes total-time, downtime and mbps;
            # they are final once the source's run state is postmigrate.
            deadline = time.monotonic() + 5
            while src.status() not in ("postmigrate", None) and time.monotonic() < deadline:
                time.sleep(0.002)
        # The source QEMU stays up (postmigrate): its final query-migrate, raw.
        try:
            leg.final_stats = _qmp_call(src, "query-migrate")
        except StepError:
            leg.final_stats = None
        if "timeout_action" in state:
            leg.extra["timeout_action"] = state["timeout_action"]
        leg.extra["stats_source"] = "qemu"
        leg.extra.update(_phases(leg))
        leg.extra.update(_postcopy_times(leg))
        if status != "completed":
            dst.stop()
            message = (leg.final_stats or {}).get("error-desc") or f"migration {status}"
            if state.get("timeout_action"):
                message = f"timed out after {(timeout or {}).get('seconds', 0):g} s ({state['timeout_action']}): {message}"
            raise StepError(message)
        # The guest now lives in the destination QEMU; wait until it runs there, then quit the source.
        deadline = time.monotonic() + 10
        dst_state = dst.status()
        while dst_state not in ("running", "paused", None) and time.monotonic() < deadline:
            time.sleep(0.01)
            dst_state = dst.status()
        leg.extra["destination_state"] = dst_state
        self.procs[leg.destination] = dst
        del self.procs[leg.source]
        leg.extra["source_exit"] = src.stop()
        self.spent.append(src)
        d["host"] = self._role(leg.destination)
        if dst_state is None:
            raise StepError(f"the destination QEMU on {dst.host.name} exited after the migration: {dst.log_tail()}")

    def _wait(self, ctx, leg, src: QemuProcess) -> str:
        """Wait for the end of the migration; one ``iteration`` sample per MIGRATION_PASS."""
        want = ("MIGRATION", "MIGRATION_PASS")
        last_poll = 0.0
        while True:
            ev = src.client.wait_event(lambda e: e.get("event") in want, 0.02)
            if ev is not None:
                data = ev.get("data") or {}
                if ev["event"] == "MIGRATION" and data.get("status") == "setup":
                    leg.backend_state.setdefault("setup_arrived", time.monotonic())
                if ev["event"] == "MIGRATION" and data.get("status") == "postcopy-active":
                    leg.backend_state.setdefault("postcopy_arrived", time.monotonic())
                if ev["event"] == "MIGRATION" and data.get("status") in _TERMINAL:
                    leg.stop_clock()
                    leg.backend_state["end_arrived"] = time.monotonic()
                    return data["status"]
                if ev["event"] == "MIGRATION_PASS":
                    self._iteration_sample(ctx, leg, src, data.get("pass"))
                continue
            if not src.alive():
                raise StepError(f"the source QEMU on {src.host.name} exited during the migration: {src.log_tail() or 'no message'}")
            now = time.monotonic()
            if now - last_poll >= 0.05:  # without the events capability, polling finds the end
                last_poll = now
                status = _qmp_call(src, "query-migrate").get("status")
                if status in _TERMINAL:
                    leg.stop_clock()
                    leg.backend_state.setdefault("end_arrived", time.monotonic())
                    return status

    def _iteration_sample(self, ctx, leg, src: QemuProcess, iteration) -> None:
        try:
            stats = src.client.execute("query-migrate", timeout=5)
        except (QMPError, QMPConnectionError):
            stats = None
        if stats is not None:
            if stats.get("status") not in (None, "none") and iteration is not None:
                ram = stats.setdefault("ram", {})
                ram["dirty-sync-count"] = max(int(iteration), ram.get("dirty-sync-count") or 0)
            ctx.emit_sample(leg, stats, kind="iteration")
        if iteration is not None:
            self._maybe_switch_to_postcopy(ctx, leg, src, int(iteration), (stats or {}).get("ram", {}).get("remaining"))

    def _maybe_switch_to_postcopy(self, ctx, leg, src: QemuProcess, iteration: int, remaining: int | None) -> None:
        """``postcopy_switch``: after N passes, or when the RAM still to send stopped shrinking
        (the libvirt backend's rule, on QEMU's MIGRATION_PASS events)."""
        reason = switch_reason(leg.backend_state, iteration, remaining)
        if reason is None:
            return
        try:
            src.client.execute("migrate-start-postcopy", timeout=10)
        except (QMPError, QMPConnectionError) as exc:
            leg.extra["postcopy_switch"] = {"reason": reason, "iteration": iteration, "error": str(exc)}
            ctx.echo(f"leg {leg.number}: could not switch to post-copy ({reason}): {exc}")
            return
        leg.extra["postcopy_switch"] = {"reason": reason, "iteration": iteration, "requested_ms": round(leg.elapsed_ms(), 3)}
        ctx.echo(f"leg {leg.number}: switched to post-copy {reason}")
        try:
            stats = src.client.execute("query-migrate", timeout=5)
        except (QMPError, QMPConnectionError):
            stats = None
        ctx.emit_sample(leg, stats or {"status": "postcopy-requested"}, kind="postcopy")

    def _on_timeout(self, ctx, leg, src: QemuProcess, action: str) -> None:
        if leg.done.is_set() or not src.alive():
            return
        leg.backend_state["timeout_action"] = action
        ctx.echo(f"leg {leg.number}: timeout reached, action {action}")
        command = {"abort": "migrate_cancel", "suspend": "stop", "postcopy": "migrate-start-postcopy"}[action]
        try:
            src.client.execute(command, timeout=10)
        except (QMPError, QMPConnectionError) as exc:
            ctx.echo(f"leg {leg.number}: timeout action {action} failed: {exc}")

    def poll(self, leg) -> dict | None:
        src = leg.backend_state.get("src")
        if src is None or leg.done.is_set() or not src.alive():
            return None
        stats = src.qmp.execute("query-migrate", timeout=5)
        if not stats or stats.get("status") in (None, "none"):
            return None
        return stats

    def abort(self, leg) -> None:
        src = leg.backend_state.get("src")
        if src is not None and src.alive():
            src.qmp.execute("migrate_cancel", timeout=10)

    # -- restore -------------------------------------------------------------------------
    def restore(self, ctx, options: dict) -> dict:
        d = ctx.state.get("domain")
        if not d:
            return {"action": "none", "message": "no domain was prepared"}
        found: dict = {}
        holder = None
        for uri, proc in self.procs.items():
            status = proc.status()
            if status is not None:
                found[self._role(uri)] = status
                if status in _HOLDS_GUEST and holder is None:
                    holder = uri
        end: dict = {"found": found, "actions": [], "pids": {}}
        for uri, proc in list(self.procs.items()):
            role = self._role(uri)
            if options.get("keep_created") and uri == holder:
                proc.kept = True
                end["kept"] = {"host": proc.host.name, "pid": proc.pid, "qmp": proc.qmp_path, "log": proc.log_path}
                end["actions"].append(f"kept QEMU pid {proc.pid} on {role} (keep_created)")
                continue
            how = proc.stop()
            end["pids"][role] = proc.pid
            end["actions"].append(f"ended QEMU pid {proc.pid} on {role} ({how})")
            self.spent.append(proc)
            del self.procs[uri]
        left = [p.pid for p in self.spent if p.alive()]
        end["end"] = {self._role(u): p.status() for u, p in self.procs.items()}
        if left:
            end["left_running"] = left
            raise StepError(f"QEMU process(es) {left} did not end")
        if holder is None:
            end.update(lost=True, message=f"the guest {d['name']!r} ({d['uuid']}) runs in no QEMU on either host: it was lost")
        return end
