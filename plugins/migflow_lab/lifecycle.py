"""Bring the lab up, take it down, tell its state, shape its link.

``up`` is idempotent and first removes whatever an earlier, killed lab left
(namespaces, bridge, daemons, domains); ``down`` ends exactly the processes
the lab started (by PID and start time, or by the daemons' environment
marker), then everything else running in the lab's namespaces.
"""

from __future__ import annotations

import os
import shutil

from migflow.errors import HostError, PrerequisiteError
from migflow.procs import command_name

from . import pki, shaping
from .daemons import MARKER, destroy_domains, domains, mountpoints, prepare_dirs, start_daemon
from .network import apply_shaping, create_network, describe_link, remove_network
from .prereqs import accel, check_addresses, check_prerequisites
from .state import LAB_ROOT, STATE_FILE, alive, empty_link, locked, new_state, read_state, write_state
from .system import Echo, kill_processes, link_exists, marked_pids, netns_inode, netns_list, pids_in_netns, port_open, quiet
from .topology import BRIDGE, HOSTS, LIBVIRTD_PORT, LIBVIRTD_TLS_PORT, VM_BRIDGE

__all__ = ["check_tls", "down", "is_up", "shape", "status", "up"]


def _healthy(state: dict | None) -> bool:
    if not state or not state.get("hosts") or not link_exists(BRIDGE) or not link_exists(VM_BRIDGE):
        return False  # a lab of an older migflow has no VM network: `up` rebuilds it
    for h in HOSTS:
        entry = state["hosts"].get(h.name, {}).get("libvirtd")
        if h.name not in netns_list() or not alive(entry) or not port_open(h.address, LIBVIRTD_PORT):
            return False
        if not port_open(h.address, LIBVIRTD_TLS_PORT):
            return False  # a lab of an older migflow has no TLS listener: `up` rebuilds it
    return True


def is_up() -> bool:
    """True when the lab is up and healthy: both daemons alive and listening."""
    return _healthy(read_state())


def status() -> dict:
    """The lab's state as JSON-ready data (the shape of ``migflow lab status --json``)."""
    state = read_state() or {}
    hosts = []
    for h in HOSTS:
        entry = (state.get("hosts") or {}).get(h.name, {}).get("libvirtd")
        running = alive(entry)
        pid = int(entry["pid"]) if entry and running else None
        running = running and port_open(h.address, LIBVIRTD_PORT)
        doms: list = []
        if running:
            try:
                doms = domains(h)
            except Exception:  # a libvirt error: report the host as not usable
                running = False
        hosts.append({"name": h.name, "address": h.address, "uri": h.uri, "tls_uri": h.tls_uri, "libvirtd_pid": pid, "running": running, "domains": doms})
    return {
        "up": _healthy(state),
        "accel": accel(),
        "link": {**empty_link(), **(state.get("link") or {})},
        "hosts": hosts,
    }


def _leftovers(state: dict | None) -> bool:
    return bool(
        state is not None
        or link_exists(BRIDGE)
        or link_exists(VM_BRIDGE)
        or any(h.name in netns_list() for h in HOSTS)
        or any(link_exists(h.veths[0]) for h in HOSTS)
        or marked_pids(MARKER)
        or any((LAB_ROOT / h.name).exists() for h in HOSTS)
        or pki.PKI_DIR.exists()
    )


def _teardown(state: dict | None, echo: Echo) -> None:
    """Remove everything the lab (this one or an earlier, killed one) left behind."""
    state = state or {}
    for h in HOSTS:
        entry = (state.get("hosts") or {}).get(h.name, {}).get("libvirtd")
        if alive(entry) and port_open(h.address, LIBVIRTD_PORT):
            destroy_domains(h, echo)
    inodes = {i for i in (state.get("netns") or {}).values() if i}
    inodes |= {i for i in (netns_inode(h.name) for h in HOSTS) if i}
    # daemons first (recorded PIDs, verified by start time, and marked ones), then
    # whatever else runs in the lab's namespaces (QEMU, helpers started on a host)
    daemons = [e["pid"] for e in state.get("pids") or [] if alive(e)]
    daemons += [p for p in marked_pids(MARKER) if p not in daemons]
    reapers = [p for p in daemons if command_name(p) != "libvirtd"]  # each daemon's reaper (python3), see daemons.REAPER
    kill_processes([p for p in daemons if p not in reapers], echo, "libvirtd")
    kill_processes(reapers, echo, "libvirtd's reaper")
    if inodes:
        kill_processes(pids_in_netns(inodes), echo, "process in a lab namespace")
    remove_network(state, echo)
    for h in HOSTS:
        shutil.rmtree(LAB_ROOT / h.name, ignore_errors=True)
    pki.remove()
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


def _repair(state: dict, echo: Echo) -> bool:
    """Restart the daemons that died in a lab that is otherwise whole (namespaces, bridges,
    certificates in place); True when the lab is healthy again.  The guests keep running: a
    restarted libvirtd finds its QEMU processes again, so a crashed daemon costs no one's domain."""
    whole = (
        state.get("hosts")
        and link_exists(BRIDGE)
        and link_exists(VM_BRIDGE)
        and all(h.name in netns_list() for h in HOSTS)
        and (LAB_ROOT / "pki" / "ca-cert.pem").exists()
    )
    if not whole:
        return False
    # Two passes: a daemon still dying when the first looked (killed, its socket not yet
    # closed) is found gone by the second.
    for _ in range(2):
        for h in HOSTS:
            entry = state["hosts"].get(h.name, {}).get("libvirtd")
            if alive(entry) and port_open(h.address, LIBVIRTD_PORT):
                continue
            echo(f"lab: libvirtd of {h.name} is gone; starting it again (its guests keep running)")
            try:
                start_daemon(h, state, echo)
            except HostError as exc:
                echo(f"lab: {exc.message}")
                return False
        if _healthy(state):
            return True
    return False


def up(rate=None, delay_ms=None, jitter_ms=None, loss_pct=None, echo: Echo | None = print) -> dict:
    """Bring the lab up (idempotent) and return :func:`status`.

    When the lab is already healthy, nothing changes except the link shaping, if
    shaping values are given.  Leftovers of an earlier lab that was killed (stale
    namespaces, bridge, daemons, domains) are removed first.
    """
    say = echo or quiet
    check_prerequisites()
    with locked():
        return _up(rate, delay_ms, jitter_ms, loss_pct, say)


def _up(rate, delay_ms, jitter_ms, loss_pct, echo: Echo) -> dict:
    want_shape = any(v is not None for v in (rate, delay_ms, jitter_ms, loss_pct))
    link = shaping.normalize(rate, delay_ms, jitter_ms, loss_pct) if want_shape else None
    state = read_state()
    if _healthy(state):
        echo("lab: already up")
        if link is not None:
            shape(**link)
        return status()
    if state and _repair(state, echo):
        if link is not None:
            shape(**link)
        return status()
    if _leftovers(state):
        echo("lab: removing leftovers of an earlier lab")
        _teardown(state, echo)
    check_addresses()
    state = new_state()
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    write_state(state)
    # On a failure below everything stays in place for inspection; `migflow lab down` or `up` cleans up.
    for path in mountpoints():
        if not os.path.exists(path):
            os.makedirs(path)
            state["created_paths"].append(path)  # removed by down when still empty
    write_state(state)
    pki.create(HOSTS)
    for h in HOSTS:
        prepare_dirs(h)
    create_network(state, echo)
    for h in HOSTS:
        start_daemon(h, state, echo)
    if link is not None:
        shape(**link)
    st = status()
    echo(f"lab: up ({st['accel']}); link: {describe_link(st['link'])}")
    return st


def check_tls(echo: Echo | None = print) -> list[str]:
    """Connect to both hosts over TLS with the lab's client certificate; their TLS URIs.

    A :class:`~migflow.errors.HostError` with libvirt's words when a host refuses."""
    import libvirt

    say = echo or quiet
    for h in HOSTS:
        try:
            conn = libvirt.open(h.tls_uri)
            try:
                version = conn.getLibVersion()
            finally:
                conn.close()
        except libvirt.libvirtError as exc:
            raise HostError(
                f"{h.name}: libvirtd does not answer over TLS: {exc.get_error_message()}", hint="`migflow lab down && migflow lab up` renews the certificates"
            ) from None
        say(f"lab: {h.name} answers over TLS (libvirt {version // 1000000}.{version // 1000 % 1000}.{version % 1000}): {h.tls_uri}")
    return [h.tls_uri for h in HOSTS]


def down(echo: Echo | None = print) -> None:
    """Destroy the lab's domains, end every process it started, remove its namespaces,
    bridge, veths, folders and state.  A no-op (with a message) when already down."""
    say = echo or quiet
    if os.geteuid() != 0:
        raise PrerequisiteError("the lab needs root", hint="run as root, e.g. sudo migflow lab down")
    with locked():
        state = read_state()
        if not _leftovers(state):
            say("lab: already down; nothing to do")
            return
        _teardown(state, say)
    say("lab: down")


def shape(rate=None, delay_ms=None, jitter_ms=None, loss_pct=None) -> dict:
    """Shape the link between the hosts (each host's egress); all None clears it.

    :param rate: tc rate such as ``"1gbit"``, ``"100mbit"`` (tbf).
    :param delay_ms: one-way delay in ms, per direction (netem).
    :param jitter_ms: delay variation in ms (netem; needs ``delay_ms``).
    :param loss_pct: packet loss in percent (netem).
    :returns: the link dict now in force.
    """
    link = shaping.normalize(rate, delay_ms, jitter_ms, loss_pct)
    with locked():
        state = read_state()
        if not _healthy(state):
            raise HostError("the lab is not up", hint="migflow lab up")
        assert state is not None  # _healthy says so
        return apply_shaping(state, link)


def link() -> dict:
    """The shaping in force now (every key None when unshaped or when the lab is down)."""
    return {**empty_link(), **((read_state() or {}).get("link") or {})}
