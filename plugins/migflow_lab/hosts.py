"""The embedded two-host lab: two libvirt hosts in network namespaces on this machine.

Topology (see docs/lab.md)::

    root namespace: bridge mflab0 198.18.0.254/24  (clients, e.g. migflow, live here)
        |-- mflab-a-br <veth> mflab-a-in 198.18.0.1   netns mflab-a: libvirtd, QEMU
        `-- mflab-b-br <veth> mflab-b-in 198.18.0.2   netns mflab-b: libvirtd, QEMU

Each host's libvirtd runs inside its network namespace and in a private mount
namespace where per-host folders under ``/var/lib/migflow-lab/<host>/`` are
bind-mounted over ``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``,
``/var/log/libvirt`` and ``/var/cache/libvirt``.  Every PID the lab starts is kept in
``/var/lib/migflow-lab/state.json`` so that ``down`` ends exactly those.

Public API (other plugins depend on these names): :data:`LAB_HOSTS`,
:func:`lab_host_pair`, :func:`is_lab_uri`, :func:`is_up`, :func:`up`, :func:`down`,
:func:`status`, :func:`shape`, :func:`host_exec`, :func:`host_argv`,
:func:`libvirtd_pid`, :func:`qemu_pids`, :func:`accel`, :func:`check_prerequisites`.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from migflow.errors import HostError, PrerequisiteError
from migflow.registry import HostPair

from . import shaping

__all__ = [
    "BRIDGE",
    "BRIDGE_ADDRESS",
    "LAB_HOSTS",
    "LAB_ROOT",
    "STATE_FILE",
    "accel",
    "check_prerequisites",
    "down",
    "host_argv",
    "host_exec",
    "is_lab_uri",
    "is_up",
    "lab_host_pair",
    "libvirtd_pid",
    "qemu_pids",
    "shape",
    "status",
    "up",
]

LAB_ROOT = Path(os.environ.get("MIGFLOW_LAB_ROOT", "/var/lib/migflow-lab"))
STATE_FILE = LAB_ROOT / "state.json"
BRIDGE = "mflab0"
BRIDGE_ADDRESS = "198.18.0.254"
PREFIX_LEN = 24
LIBVIRTD_PORT = 16509
INSTALL_HINT = "run as root: sh scripts/install-prereqs.sh (from the migflow checkout; installs the Debian packages and creates the user and groups)"

LAB_HOSTS: list[dict] = [
    {"name": "mflab-a", "address": "198.18.0.1", "uri": "qemu+tcp://198.18.0.1/system"},
    {"name": "mflab-b", "address": "198.18.0.2", "uri": "qemu+tcp://198.18.0.2/system"},
]

#: per-host folder (under LAB_ROOT/<host>/) -> the path it is bind-mounted over
MOUNTS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
_MARKER = "MIGFLOW_LAB_HOST"  # environment variable every lab daemon carries

Echo = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# -- names and lookups -------------------------------------------------------------


def lab_host_pair() -> HostPair:
    """The lab's two hosts as a :class:`~migflow.registry.HostPair` (source a, destination b)."""
    return HostPair(LAB_HOSTS[0]["uri"], LAB_HOSTS[1]["uri"], lab=True)


def is_lab_uri(uri) -> bool:
    """True when ``uri`` names one of the lab's hosts (``qemu+tcp://198.18.0.1/system`` ...)."""
    if not isinstance(uri, str) or "://" not in uri:
        return False
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return False
    return host in {h["address"] for h in LAB_HOSTS}


def _host(name_or_uri: str) -> dict:
    """Find a lab host by name (``mflab-a``), short name (``a``), address or URI."""
    for h in LAB_HOSTS:
        short = h["name"].rsplit("-", 1)[-1]
        if name_or_uri in (h["name"], short, h["address"], h["uri"]):
            return h
        if is_lab_uri(name_or_uri) and urlsplit(name_or_uri).hostname == h["address"]:
            return h
    raise HostError(f"{name_or_uri!r} is not a lab host", hint="lab hosts: " + ", ".join(h["name"] for h in LAB_HOSTS))


def _veths(h: dict) -> tuple[str, str]:
    """(root-side end on the bridge, end inside the host namespace)."""
    return f"{h['name']}-br", f"{h['name']}-in"


def _host_uuid(h: dict) -> str:
    # Stable and distinct per host: libvirt refuses to migrate between hosts with one UUID.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"migflow-lab:{h['name']}"))


# -- small system helpers ----------------------------------------------------------------


def _run(argv: list[str], *, check: bool = True, what: str | None = None, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    try:
        proc = subprocess.run(argv, check=False, **kw)
    except FileNotFoundError as exc:
        raise PrerequisiteError(f"command not found: {argv[0]}", hint=INSTALL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{what or ' '.join(argv)}: timed out after {kw['timeout']} s") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise HostError(f"{what or ' '.join(argv)} failed: {err[-1] if err else f'exit status {proc.returncode}'}")
    return proc


def _proc_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(entry: dict | None) -> bool:
    """Is the process recorded as ``{"pid": n, "start": ticks}`` still the same live process?"""
    if not entry or not entry.get("pid"):
        return False
    start = _proc_start(int(entry["pid"]))
    return start is not None and (entry.get("start") is None or start == entry["start"])


def _port_open(address: str, port: int = LIBVIRTD_PORT, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def _is_mountpoint(path: str) -> bool:
    """Like os.path.ismount, but also true for a bind mount of a folder onto itself
    (what `ip netns add` does with /run/netns), which ismount cannot see."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return os.path.ismount(path)


def _link_exists(dev: str) -> bool:
    return os.path.exists(f"/sys/class/net/{dev}")


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pids_in_netns(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes`` (what ``ip netns pids`` does)."""
    out = []
    me = os.getpid()
    for pid in _all_pids():
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes and _proc_start(pid) is not None:
                out.append(pid)
        except OSError:
            continue
    return out


def _marked_pids() -> dict[int, str]:
    """Lab daemons found by their environment marker, even when their namespace is gone."""
    out = {}
    needle = (_MARKER + "=").encode()
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env and _proc_start(pid) is not None:
            for item in env.split(b"\0"):
                if item.startswith(needle):
                    out[pid] = item[len(needle) :].decode(errors="replace")
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


# -- lock --------------------------------------------------------------------------------------

_lock = threading.RLock()
_lock_depth = 0
_lock_fd: int | None = None


@contextmanager
def _locked():
    """Serialize up/down/shape between processes (two runs preparing the lab at once).

    flock on the folder that holds LAB_ROOT (``/var/lib``): it leaves no file behind,
    and LAB_ROOT itself comes and goes.  Reentrant within a process.
    """
    global _lock_depth, _lock_fd
    with _lock:
        if _lock_depth == 0:
            LAB_ROOT.parent.mkdir(parents=True, exist_ok=True)
            _lock_fd = os.open(LAB_ROOT.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(_lock_fd, fcntl.LOCK_EX)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            if _lock_depth == 0:
                os.close(_lock_fd)  # releases the flock
                _lock_fd = None


# -- state -------------------------------------------------------------------------------------


def _read_state() -> dict | None:
    try:
        with open(STATE_FILE) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treat as leftovers


def _write_state(state: dict) -> None:
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
    os.replace(tmp, STATE_FILE)


def _empty_link() -> dict:
    return dict.fromkeys(shaping.LINK_KEYS)


# -- acceleration and prerequisites -------------------------------------------------------------


def accel() -> str:
    """``"kvm"`` when /dev/kvm works, else ``"tcg"``; ``MIGFLOW_LAB_ACCEL=tcg`` (or ``kvm``) forces it."""
    from migflow.kvm import accel as probe

    return probe("MIGFLOW_LAB_ACCEL")


_COMMANDS = {  # command -> Debian package
    "libvirtd": "libvirt-daemon",
    "qemu-system-x86_64": "qemu-system-x86",
    "ip": "iproute2",
    "tc": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
}


def _which(cmd: str) -> str | None:
    return shutil.which(cmd) or shutil.which(cmd, path="/usr/sbin:/sbin:/usr/bin:/bin")


def check_prerequisites() -> None:
    """Raise one :class:`~migflow.errors.PrerequisiteError` naming everything the machine lacks."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the lab needs root (it creates network namespaces, a bridge and libvirt daemons)", hint="run as root, e.g. sudo migflow lab up"
        )
    missing = []
    cmds = [c for c in _COMMANDS if not _which(c)]
    if cmds:
        pkgs = sorted({_COMMANDS[c] for c in cmds})
        missing.append(f"commands {', '.join(cmds)} (Debian packages {', '.join(pkgs)})")
    elif not glob.glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so") and not glob.glob(
        "/usr/lib*/libvirt/connection-driver/libvirt_driver_qemu.so"
    ):
        missing.append("libvirt's QEMU driver (Debian package libvirt-daemon-driver-qemu)")
    import grp
    import pwd

    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        missing.append("user libvirt-qemu (libvirt's QEMU driver will not start without it, even with user=root)")
    for group in ("kvm", "libvirt-qemu"):
        try:
            grp.getgrnam(group)
        except KeyError:
            missing.append(f"group {group}")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        missing.append("the Python module libvirt (pip install libvirt-python; needs libvirt-dev and pkg-config)")
    if missing:
        raise PrerequisiteError("the lab cannot start; this machine lacks: " + "; ".join(missing), hint=INSTALL_HINT)


def _check_addresses() -> None:
    """Refuse to start when something else on the machine already uses the lab's subnet."""
    proc = _run(["ip", "-o", "-4", "addr", "show", "to", f"198.18.0.0/{PREFIX_LEN}"], check=False)
    for line in proc.stdout.splitlines():
        dev = line.split()[1]
        if dev != BRIDGE:
            raise HostError(
                f"198.18.0.0/{PREFIX_LEN} is already used on this machine by {dev}",
                hint="the lab needs that subnet for itself; remove the address or the device",
            )


# -- configuration -------------------------------------------------------------------------------


def _libvirtd_conf(h: dict) -> str:
    return f"""# written by migflow lab: host {h["name"]}
listen_tls = 0
listen_tcp = 1
listen_addr = "{h["address"]}"
auth_tcp = "none"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "{_host_uuid(h)}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def _qemu_conf(h: dict) -> str:
    return f"""# written by migflow lab: host {h["name"]}
user = "root"
group = "root"
security_driver = "none"
# QEMU's stdout/stderr go to plain files: no virtlogd needed
stdio_handler = "file"
# the destination tells the source this address (not its hostname) to migrate to
migration_host = "{h["address"]}"
migration_address = "{h["address"]}"
# no per-domain /dev namespace: simpler inside the lab's own mount namespace
namespaces = [ ]
remember_owner = 0
"""


def _prepare_dirs(h: dict) -> None:
    base = LAB_ROOT / h["name"]
    for sub in MOUNTS:
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(h))
    (base / "etc" / "qemu.conf").write_text(_qemu_conf(h))
    (base / "etc" / "libvirt.conf").write_text("# written by migflow lab\n")


def _mountpoints() -> list[str]:
    paths = list(MOUNTS.values())
    if os.path.realpath("/var/run/libvirt") != "/run/libvirt":
        paths.append("/var/run/libvirt")  # /var/run is not a symlink to /run here
    return paths


# -- network -----------------------------------------------------------------------------------------


def _create_network(state: dict, echo: Echo) -> None:
    if not os.path.isdir("/run/netns"):
        state["created_paths"].append("/run/netns")
    if not _is_mountpoint("/run/netns"):
        state["mounted_run_netns"] = True  # `ip netns add` mounts /run/netns onto itself
    _write_state(state)
    echo(f"lab: bridge {BRIDGE} {BRIDGE_ADDRESS}/{PREFIX_LEN}")
    _run(["ip", "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
    _run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    for h in LAB_HOSTS:
        ns = h["name"]
        outer, inner = _veths(h)
        _run(["ip", "netns", "add", ns])
        state["netns"][ns] = _netns_inode(ns)
        _write_state(state)
        _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns])
        _run(["ip", "link", "set", outer, "master", BRIDGE, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{h['address']}/{PREFIX_LEN}", "dev", inner])
        _run(["ip", "-n", ns, "link", "set", inner, "up"])


def _start_daemon(h: dict, state: dict, echo: Echo) -> None:
    ns = h["name"]
    base = LAB_ROOT / ns
    pidfile = base / "run" / "libvirtd.pid"
    for stale in (pidfile, base / "run" / "libvirt-sock"):
        stale.unlink(missing_ok=True)
    binds = "\n".join(f"mount --bind {base / sub} {path}" for sub, path in MOUNTS.items())
    if "/var/run/libvirt" in _mountpoints():
        binds += f"\nmount --bind {base / 'run'} /var/run/libvirt"
    script = f"set -e\n{binds}\nexec libvirtd -d -l -p /var/run/libvirt/libvirtd.pid -f /etc/libvirt/libvirtd.conf\n"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", _MARKER: ns, "HOME": "/root"}
    with open(base / "log" / "startup.log", "ab") as log:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            timeout=60,
        )
    if proc.returncode != 0:
        raise HostError(f"libvirtd of {ns} did not start (exit status {proc.returncode})", hint=_log_hint(ns))
    deadline = time.monotonic() + 30
    pid = None
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid and _proc_start(pid) is not None:
            break
        time.sleep(0.1)
    else:
        raise HostError(f"libvirtd of {ns} wrote no pid file", hint=_log_hint(ns))
    entry = {"pid": pid, "start": _proc_start(pid)}
    state["hosts"][ns] = {"libvirtd": entry}
    state["pids"].append({**entry, "what": f"libvirtd {ns}"})
    _write_state(state)
    while time.monotonic() < deadline:
        if not _alive(entry):
            raise HostError(f"libvirtd of {ns} exited right after starting", hint=_log_hint(ns))
        if _port_open(h["address"]):
            echo(f"lab: host {ns} {h['address']}: libvirtd pid {pid}, {h['uri']}")
            return
        time.sleep(0.1)
    raise HostError(f"libvirtd of {ns} does not listen on {h['address']}:{LIBVIRTD_PORT}", hint=_log_hint(ns))


def _log_hint(ns: str) -> str:
    log = LAB_ROOT / ns / "log" / "libvirtd.log"
    tail = ""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if " error " in ln.lower() or ": error" in ln.lower()]
        if lines:
            tail = f"; last error: {lines[-1].split(': ', 2)[-1]}"
    except OSError:
        pass
    return f"see {log} and {LAB_ROOT / ns / 'log' / 'startup.log'}{tail}; `migflow lab down` removes the leftovers"


# -- health and status ------------------------------------------------------------------------------------


def _healthy(state: dict | None) -> bool:
    if not state or not state.get("hosts") or not _link_exists(BRIDGE):
        return False
    for h in LAB_HOSTS:
        entry = state["hosts"].get(h["name"], {}).get("libvirtd")
        if h["name"] not in _netns_list() or not _alive(entry) or not _port_open(h["address"]):
            return False
    return True


def is_up() -> bool:
    """True when the lab is up and healthy: both daemons alive and listening."""
    return _healthy(_read_state())


def libvirtd_pid(host_name: str) -> int | None:
    """PID of the host's running libvirtd (by name ``mflab-a``, ``a``, address or URI), or None."""
    h = _host(host_name)
    entry = ((_read_state() or {}).get("hosts") or {}).get(h["name"], {}).get("libvirtd")
    return int(entry["pid"]) if _alive(entry) else None


def qemu_pids(host_name: str) -> list[int]:
    """PIDs of the QEMU processes running inside the host's namespace."""
    h = _host(host_name)
    inode = _netns_inode(h["name"])
    if inode is None:
        return []
    return sorted(p for p in _pids_in_netns({inode}) if _comm(p).startswith("qemu"))


def _domains(uri: str) -> list[dict]:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    names = {1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed", 7: "pmsuspended"}
    conn = libvirt.open(uri)
    try:
        return sorted(({"name": d.name(), "state": names.get(d.state()[0], "unknown")} for d in conn.listAllDomains()), key=lambda d: d["name"])
    finally:
        conn.close()


def status() -> dict:
    """The lab's state as JSON-ready data (the shape of ``migflow lab status --json``)."""
    state = _read_state() or {}
    hosts = []
    for h in LAB_HOSTS:
        entry = (state.get("hosts") or {}).get(h["name"], {}).get("libvirtd")
        alive = _alive(entry)
        running = alive and _port_open(h["address"])
        domains: list = []
        if running:
            try:
                domains = _domains(h["uri"])
            except Exception:  # libvirt error: report the host as not usable
                running = False
        hosts.append({**h, "libvirtd_pid": int(entry["pid"]) if alive else None, "running": running, "domains": domains})
    return {
        "up": _healthy(state),
        "accel": accel(),
        "link": {**_empty_link(), **(state.get("link") or {})},
        "hosts": hosts,
    }


# -- up / down ----------------------------------------------------------------------------------------------


def _leftovers(state: dict | None) -> bool:
    return bool(
        state is not None
        or _link_exists(BRIDGE)
        or any(ns in _netns_list() for ns in (h["name"] for h in LAB_HOSTS))
        or any(_link_exists(_veths(h)[0]) for h in LAB_HOSTS)
        or _marked_pids()
        or any((LAB_ROOT / h["name"]).exists() for h in LAB_HOSTS)
    )


def _destroy_domains(state: dict, echo: Echo) -> None:
    try:
        import libvirt
    except ImportError:
        return
    libvirt.registerErrorHandler(lambda *_: None, None)
    for h in LAB_HOSTS:
        entry = (state.get("hosts") or {}).get(h["name"], {}).get("libvirtd")
        if not _alive(entry) or not _port_open(h["address"]):
            continue
        try:
            conn = libvirt.open(h["uri"])
        except libvirt.libvirtError:
            continue
        try:
            for dom in conn.listAllDomains():
                name = dom.name()
                try:
                    persistent = dom.isPersistent()
                    if dom.isActive():
                        dom.destroy()  # a transient domain is gone after this
                    if persistent:
                        dom.undefineFlags(getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0) | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", 0))
                    echo(f"lab: destroyed domain {name} on {h['name']}")
                except libvirt.libvirtError as exc:
                    echo(f"lab: could not destroy domain {name} on {h['name']}: {exc}")
        finally:
            conn.close()


def _kill(pids: list[int], echo: Echo, what: str) -> None:
    """SIGTERM, wait up to 5 s, then SIGKILL; wait until they are gone."""
    entries = [(p, _proc_start(p)) for p in pids]
    entries = [(p, s) for p, s in entries if s is not None]
    if not entries:
        return
    for pid, _ in entries:
        echo(f"lab: ending {what} pid {pid} ({_comm(pid)})")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for sig, wait in ((None, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            for pid, start in entries:
                if _proc_start(pid) == start:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(_proc_start(pid) != start for pid, start in entries):
                return
            time.sleep(0.05)
    left = [pid for pid, start in entries if _proc_start(pid) == start]
    if left:
        raise HostError(f"could not end {what} {left}")


def _teardown(state: dict | None, echo: Echo) -> None:
    """Remove everything the lab (this one or an earlier, killed one) left behind."""
    state = state or {}
    _destroy_domains(state, echo)
    inodes = {i for i in (state.get("netns") or {}).values() if i}
    inodes |= {i for i in (_netns_inode(h["name"]) for h in LAB_HOSTS) if i}
    # daemons first (recorded PIDs, verified by start time, and marked ones), then
    # whatever else runs in the lab's namespaces (QEMU, helpers started by host_exec)
    daemons = [e["pid"] for e in state.get("pids") or [] if _alive(e)]
    daemons += [p for p in _marked_pids() if p not in daemons]
    _kill(daemons, echo, "libvirtd")
    if inodes:
        _kill(_pids_in_netns(inodes), echo, "process in a lab namespace")
    for h in LAB_HOSTS:
        outer, _ = _veths(h)
        if _link_exists(outer):
            _run(["ip", "link", "del", outer], check=False)
        if h["name"] in _netns_list():
            echo(f"lab: removing namespace {h['name']}")
            _run(["ip", "netns", "del", h["name"]])
    if _link_exists(BRIDGE):
        echo(f"lab: removing bridge {BRIDGE}")
        _run(["ip", "link", "del", BRIDGE])
    for h in LAB_HOSTS:
        shutil.rmtree(LAB_ROOT / h["name"], ignore_errors=True)
    if state.get("mounted_run_netns") and _is_mountpoint("/run/netns") and not _netns_list():
        _run(["umount", "/run/netns"], check=False)
    for path in reversed(state.get("created_paths") or []):
        try:
            os.rmdir(path)  # only when empty: never remove what someone else put there
        except OSError:
            pass
    STATE_FILE.unlink(missing_ok=True)
    STATE_FILE.with_suffix(".tmp").unlink(missing_ok=True)
    try:
        LAB_ROOT.rmdir()
    except OSError:
        pass


def up(rate=None, delay_ms=None, jitter_ms=None, loss_pct=None, echo: Echo = print) -> dict:
    """Bring the lab up (idempotent) and return :func:`status`.

    When the lab is already healthy, nothing changes except the link shaping, if
    shaping values are given.  Leftovers of an earlier lab that was killed (stale
    namespaces, bridge, daemons, domains) are removed first.
    """
    echo = echo or _quiet
    check_prerequisites()
    with _locked():
        return _up(rate, delay_ms, jitter_ms, loss_pct, echo)


def _up(rate, delay_ms, jitter_ms, loss_pct, echo: Echo) -> dict:
    want_shape = any(v is not None for v in (rate, delay_ms, jitter_ms, loss_pct))
    link = shaping.normalize(rate, delay_ms, jitter_ms, loss_pct) if want_shape else None
    state = _read_state()
    if _healthy(state):
        echo("lab: already up")
        if link is not None:
            shape(**link)
        return status()
    if _leftovers(state):
        echo("lab: removing leftovers of an earlier lab")
        _teardown(state, echo)
    _check_addresses()
    state = {"version": 1, "hosts": {}, "pids": [], "netns": {}, "created_paths": [], "mounted_run_netns": False, "link": _empty_link()}
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    _write_state(state)
    try:
        for path in _mountpoints():
            if not os.path.exists(path):
                os.makedirs(path)
                state["created_paths"].append(path)  # removed by down when still empty
        _write_state(state)
        for h in LAB_HOSTS:
            _prepare_dirs(h)
        _create_network(state, echo)
        for h in LAB_HOSTS:
            _start_daemon(h, state, echo)
    except HostError:
        raise  # leave everything in place for inspection; `migflow lab down` or `up` cleans up
    if link is not None:
        shape(**link)
    st = status()
    echo(f"lab: up ({st['accel']}); link: {describe_link(st['link'])}")
    return st


def down(echo: Echo = print) -> None:
    """Destroy the lab's domains, end every process it started, remove its namespaces,
    bridge, veths, folders and state.  A no-op (with a message) when already down."""
    echo = echo or _quiet
    if os.geteuid() != 0:
        raise PrerequisiteError("the lab needs root", hint="run as root, e.g. sudo migflow lab down")
    with _locked():
        state = _read_state()
        if not _leftovers(state):
            echo("lab: already down; nothing to do")
            return
        _teardown(state, echo)
    echo("lab: down")


# -- shaping ----------------------------------------------------------------------------------------


def describe_link(link: dict) -> str:
    parts = []
    if link.get("rate"):
        parts.append(f"rate {link['rate']}")
    if link.get("delay_ms"):
        parts.append(f"delay {link['delay_ms']:g} ms" + (f" ± {link['jitter_ms']:g} ms" if link.get("jitter_ms") else ""))
    if link.get("loss_pct"):
        parts.append(f"loss {link['loss_pct']:g}%")
    return ", ".join(parts) or "unshaped"


def shape(rate=None, delay_ms=None, jitter_ms=None, loss_pct=None) -> dict:
    """Shape the link between the hosts (each host's egress); all None clears it.

    :param rate: tc rate such as ``"1gbit"``, ``"100mbit"`` (tbf).
    :param delay_ms: one-way delay in ms, per direction (netem).
    :param jitter_ms: delay variation in ms (netem; needs ``delay_ms``).
    :param loss_pct: packet loss in percent (netem).
    :returns: the link dict now in force.
    """
    link = shaping.normalize(rate, delay_ms, jitter_ms, loss_pct)
    with _locked():
        return _shape(link)


def _shape(link: dict) -> dict:
    state = _read_state()
    if not _healthy(state):
        raise HostError("the lab is not up", hint="migflow lab up")
    for h in LAB_HOSTS:
        _, dev = _veths(h)
        ns = ["ip", "netns", "exec", h["name"]]
        _run([*ns, "tc", "qdisc", "del", "dev", dev, "root"], check=False)
        for cmd in shaping.tc_commands(dev, link):
            proc = _run([*ns, *cmd], check=False)
            if proc.returncode != 0:
                err = (proc.stderr or "").strip()
                for other in LAB_HOSTS:  # never leave the link half-shaped
                    _run(["ip", "netns", "exec", other["name"], "tc", "qdisc", "del", "dev", _veths(other)[1], "root"], check=False)
                state["link"] = _empty_link()
                _write_state(state)
                if "netem" in cmd and "unknown" in err.lower():
                    raise PrerequisiteError(
                        "this kernel has no netem qdisc, so delay, jitter and loss cannot be shaped (rate can: it uses tbf); the link is now unshaped",
                        hint="load it with `modprobe sch_netem` (a kernel built with CONFIG_NET_SCH_NETEM), or shape the rate only",
                    )
                raise HostError(f"tc on {h['name']} failed: {err or proc.returncode}")
    state["link"] = link
    _write_state(state)
    return dict(link)


def netem_available() -> bool:
    """Can this kernel's tc use netem?  (Probes on the loopback of host a; the lab must be up.)"""
    ns = ["ip", "netns", "exec", LAB_HOSTS[0]["name"]]
    test = _run([*ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
    if test.returncode == 0:
        _run([*ns, "tc", "qdisc", "del", "dev", "lo", "root"], check=False)
    return test.returncode == 0


# -- running commands on a host ----------------------------------------------------------------------


def host_argv(host_name: str, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` inside the host's network and mount namespaces
    (through ``nsenter`` into its libvirtd), for callers that need ``Popen``."""
    h = _host(host_name)
    pid = libvirtd_pid(h["name"])
    if pid is None:
        raise HostError(f"lab host {h['name']} is not running", hint="migflow lab up")
    return ["nsenter", "-t", str(pid), "-n", "-m", "--", *argv]


def host_exec(host_name: str, argv: list[str], **subprocess_kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` inside a lab host's network and mount namespaces; returns
    :class:`subprocess.CompletedProcess` (keyword arguments go to :func:`subprocess.run`)."""
    return subprocess.run(host_argv(host_name, argv), check=False, **subprocess_kwargs)
