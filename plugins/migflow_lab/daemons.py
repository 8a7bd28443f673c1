"""The lab's libvirt daemons: configuration, start, and what runs on each host.

Each host's libvirtd runs inside its network namespace and in a private mount
namespace where per-host folders under ``LAB_ROOT/<host>/`` are bind-mounted
over ``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``,
``/var/log/libvirt`` and ``/var/cache/libvirt``.  Every daemon carries the
environment marker ``MIGFLOW_LAB_HOST`` so that a lab whose state file was lost
is still recognised.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from migflow.errors import HostError
from migflow.procs import command_name, process_start

from . import pki
from .state import LAB_ROOT, alive, read_state, write_state
from .system import Echo, netns_inode, pids_in_netns, port_open
from .topology import LIBVIRTD_PORT, LabHost

__all__ = [
    "MARKER",
    "MOUNTS",
    "command_on",
    "destroy_domains",
    "domains",
    "libvirtd_pid",
    "mountpoints",
    "prepare_dirs",
    "qemu_pids",
    "start_daemon",
]

#: per-host folder (under LAB_ROOT/<host>/) -> the path it is bind-mounted over
MOUNTS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
MARKER = "MIGFLOW_LAB_HOST"  # environment variable every lab daemon carries

#: Each host's libvirtd runs under a small reaper that is the child subreaper of
#: its processes.  libvirt daemonizes QEMU, so an orphaned QEMU would otherwise
#: belong to this machine's PID 1, which (on this machine kind, a sandbox's init)
#: reaps zombies only now and then; libvirt waits for a stopped QEMU's PID to
#: disappear, so every migration's confirm phase waited 1.3 to 1.8 s for it
#: (docs/results.md, "Where the wall time goes").  On a real host systemd reaps at once.
REAPER = """
import ctypes, os, signal, sys
r, w = os.pipe()
if os.fork():  # the caller's process: leave with libvirtd's start-up status
    os.close(w)
    os._exit(int(os.read(r, 16) or b"1"))
os.close(r)
os.setsid()
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
signal.signal(signal.SIGCHLD, lambda *_: None)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
child = os.fork()
if child == 0:
    os.close(w)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(child, 0)  # `libvirtd -d` returns once its daemon is up
os.write(w, str(os.waitstatus_to_exitcode(status)).encode())
os.close(w)
while True:
    try:
        os.waitpid(-1, 0)  # the daemon, or an adopted orphan (QEMU), as soon as it exits
    except ChildProcessError:  # the daemon and every QEMU it left behind have ended
        os._exit(0)
    except InterruptedError:
        pass
"""


def _libvirtd_conf(h: LabHost) -> str:
    tls = pki.libvirtd_files(h)
    return f"""# written by migflow lab: host {h.name}
listen_tcp = 1
listen_addr = "{h.address}"
auth_tcp = "none"
# TLS on 16514 with the lab's CA; clients must present a certificate it signed
listen_tls = 1
auth_tls = "none"
key_file = "{tls["key_file"]}"
cert_file = "{tls["cert_file"]}"
ca_file = "{tls["ca_file"]}"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "{h.host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def _qemu_conf(h: LabHost) -> str:
    return f"""# written by migflow lab: host {h.name}
user = "root"
group = "root"
security_driver = "none"
# QEMU's stdout/stderr go to plain files: no virtlogd needed
stdio_handler = "file"
# the destination tells the source this address (not its hostname) to migrate to
migration_host = "{h.address}"
migration_address = "{h.address}"
# no per-domain /dev namespace: simpler inside the lab's own mount namespace
namespaces = [ ]
remember_owner = 0
# QEMU's migration stream over TLS (the `tls` flag): the lab's CA, peers verified
migrate_tls_x509_cert_dir = "{pki.migrate_dir(h)}"
migrate_tls_x509_verify = 1
"""


def prepare_dirs(h: LabHost) -> None:
    base = LAB_ROOT / h.name
    for sub in MOUNTS:
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(h))
    (base / "etc" / "qemu.conf").write_text(_qemu_conf(h))
    (base / "etc" / "libvirt.conf").write_text("# written by migflow lab\n")


def mountpoints() -> list[str]:
    paths = list(MOUNTS.values())
    if os.path.realpath("/var/run/libvirt") != "/run/libvirt":
        paths.append("/var/run/libvirt")  # /var/run is not a symlink to /run here
    return paths


def start_daemon(h: LabHost, state: dict, echo: Echo) -> None:
    """Start the host's libvirtd and wait until it listens; its PID goes into ``state`` at once."""
    base = LAB_ROOT / h.name
    pidfile = base / "run" / "libvirtd.pid"
    for stale in (pidfile, base / "run" / "libvirt-sock"):
        stale.unlink(missing_ok=True)
    binds = "\n".join(f"mount --bind {base / sub} {path}" for sub, path in MOUNTS.items())
    if "/var/run/libvirt" in mountpoints():
        binds += f"\nmount --bind {base / 'run'} /var/run/libvirt"
    reaper = shlex.join([sys.executable, "-c", REAPER])
    script = f"set -e\n{binds}\nexec {reaper} libvirtd -d -l -p /var/run/libvirt/libvirtd.pid -f /etc/libvirt/libvirtd.conf\n"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", MARKER: h.name, "HOME": "/root"}
    with open(base / "log" / "startup.log", "ab") as log:
        proc = subprocess.run(
            ["ip", "netns", "exec", h.name, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            timeout=60,
        )
    if proc.returncode != 0:
        raise HostError(f"libvirtd of {h.name} did not start (exit status {proc.returncode})", hint=_log_hint(h))
    deadline = time.monotonic() + 30
    pid = None
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid and process_start(pid) is not None:
            break
        time.sleep(0.1)
    else:
        raise HostError(f"libvirtd of {h.name} wrote no pid file", hint=_log_hint(h))
    entry = {"pid": pid, "start": process_start(pid)}
    state["hosts"][h.name] = {"libvirtd": entry}
    # a daemon restarted in a whole lab replaces its dead predecessor (a live one stays listed, to be ended by down)
    state["pids"] = [e for e in state["pids"] if alive(e)] + [{**entry, "what": f"libvirtd {h.name}"}]
    write_state(state)
    while time.monotonic() < deadline:
        if not alive(entry):
            raise HostError(f"libvirtd of {h.name} exited right after starting", hint=_log_hint(h))
        if port_open(h.address, LIBVIRTD_PORT):
            echo(f"lab: host {h.name} {h.address}: libvirtd pid {pid}, {h.uri}")
            return
        time.sleep(0.1)
    raise HostError(f"libvirtd of {h.name} does not listen on {h.address}:{LIBVIRTD_PORT}", hint=_log_hint(h))


def _log_hint(h: LabHost) -> str:
    log = LAB_ROOT / h.name / "log" / "libvirtd.log"
    tail = ""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if " error " in ln.lower() or ": error" in ln.lower()]
        if lines:
            tail = f"; last error: {lines[-1].split(': ', 2)[-1]}"
    except OSError:
        pass
    return f"see {log} and {LAB_ROOT / h.name / 'log' / 'startup.log'}{tail}; `migflow lab down` removes the leftovers"


def libvirtd_pid(h: LabHost) -> int | None:
    """PID of the host's running libvirtd, or None."""
    entry = ((read_state() or {}).get("hosts") or {}).get(h.name, {}).get("libvirtd")
    return int(entry["pid"]) if entry and alive(entry) else None


def qemu_pids(h: LabHost) -> list[int]:
    """PIDs of the QEMU processes running inside the host's namespace."""
    inode = netns_inode(h.name)
    if inode is None:
        return []
    return sorted(p for p in pids_in_netns({inode}) if command_name(p).startswith("qemu"))


def command_on(h: LabHost, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` inside the host's network and mount namespaces
    (through ``nsenter`` into its libvirtd)."""
    pid = libvirtd_pid(h)
    if pid is None:
        raise HostError(f"lab host {h.name} is not running", hint="migflow lab up")
    return ["nsenter", "-t", str(pid), "-n", "-m", "--", *argv]


_STATE_NAMES = {1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed", 7: "pmsuspended"}


def domains(h: LabHost) -> list[dict]:
    """``[{"name": ..., "state": ...}]`` of every domain on the host's daemon."""
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(h.uri)
    try:
        return sorted(({"name": d.name(), "state": _STATE_NAMES.get(d.state()[0], "unknown")} for d in conn.listAllDomains()), key=lambda d: d["name"])
    finally:
        conn.close()


def destroy_domains(h: LabHost, echo: Echo) -> None:
    """Destroy and undefine every domain of the host's daemon (the lab is going down)."""
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        conn = libvirt.open(h.uri)
    except libvirt.libvirtError:
        return
    try:
        for dom in conn.listAllDomains():
            name = dom.name()
            try:
                persistent = dom.isPersistent()
                if dom.isActive():
                    dom.destroy()  # a transient domain is gone after this
                if persistent:
                    dom.undefineFlags(getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0) | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", 0))
                echo(f"lab: destroyed domain {name} on {h.name}")
            except libvirt.libvirtError as exc:
                echo(f"lab: could not destroy domain {name} on {h.name}: {exc}")
    finally:
        conn.close()
