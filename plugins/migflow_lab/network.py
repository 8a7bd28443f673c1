"""The lab's network: a bridge in the root namespace, a namespace and a veth pair per host,
and link shaping with tc on each host's end of its veth."""

from __future__ import annotations

import os

from migflow.errors import HostError, PrerequisiteError

from . import shaping
from .state import empty_link, write_state
from .system import Echo, is_mountpoint, link_exists, netns_inode, netns_list, run
from .topology import BRIDGE, BRIDGE_ADDRESS, HOSTS, PREFIX_LEN, VM_BRIDGE, VM_BRIDGE_IN_HOST, VM_PREFIX, VM_PROBE_ADDRESS

__all__ = ["apply_shaping", "create_network", "describe_link", "netem_available", "remove_network"]


def create_network(state: dict, echo: Echo) -> None:
    """Bridge, namespaces, veths and addresses; each step recorded in ``state`` as it is made."""
    if not os.path.isdir("/run/netns"):
        state["created_paths"].append("/run/netns")
    if not is_mountpoint("/run/netns"):
        state["mounted_run_netns"] = True  # `ip netns add` mounts /run/netns onto itself
    write_state(state)
    echo(f"lab: bridge {BRIDGE} {BRIDGE_ADDRESS}/{PREFIX_LEN}")
    run(["ip", "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
    run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    for h in HOSTS:
        outer, inner = h.veths
        run(["ip", "netns", "add", h.name])
        state["netns"][h.name] = netns_inode(h.name)
        write_state(state)
        run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", h.name])
        run(["ip", "link", "set", outer, "master", BRIDGE, "up"])
        run(["ip", "-n", h.name, "link", "set", "lo", "up"])
        run(["ip", "-n", h.name, "addr", "add", f"{h.address}/{PREFIX_LEN}", "dev", inner])
        run(["ip", "-n", h.name, "link", "set", inner, "up"])
    _create_vm_network(echo)


def _vm_veths(h) -> tuple[str, str]:
    """(end on the root VM bridge, end on the host's VM bridge)."""
    return f"{h.name}-vm", "vm-uplink"


def _create_vm_network(echo: Echo) -> None:
    """The guests' layer-2 segment: a bridge in each host, joined to one in the root namespace."""
    echo(f"lab: VM network {VM_PREFIX} on {VM_BRIDGE} (probes from {VM_PROBE_ADDRESS})")
    run(["ip", "link", "add", VM_BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
    run(["ip", "addr", "add", f"{VM_PROBE_ADDRESS}/{VM_PREFIX.split('/')[1]}", "dev", VM_BRIDGE])
    run(["ip", "link", "set", VM_BRIDGE, "up"])
    for h in HOSTS:
        outer, inner = _vm_veths(h)
        run(["ip", "-n", h.name, "link", "add", VM_BRIDGE_IN_HOST, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
        run(["ip", "-n", h.name, "link", "set", VM_BRIDGE_IN_HOST, "up"])
        run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", h.name])
        run(["ip", "link", "set", outer, "master", VM_BRIDGE, "up"])
        run(["ip", "-n", h.name, "link", "set", inner, "master", VM_BRIDGE_IN_HOST, "up"])


def remove_network(state: dict, echo: Echo) -> None:
    """Veths, namespaces and the bridge, whoever made them; /run/netns when the lab mounted it."""
    for h in HOSTS:
        for outer in (h.veths[0], _vm_veths(h)[0]):
            if link_exists(outer):
                run(["ip", "link", "del", outer], check=False)
        if h.name in netns_list():
            echo(f"lab: removing namespace {h.name}")
            run(["ip", "netns", "del", h.name])
    for bridge in (BRIDGE, VM_BRIDGE):
        if link_exists(bridge):
            echo(f"lab: removing bridge {bridge}")
            run(["ip", "link", "del", bridge])
    if state.get("mounted_run_netns") and is_mountpoint("/run/netns") and not netns_list():
        run(["umount", "/run/netns"], check=False)


def describe_link(link: dict) -> str:
    """``rate 1gbit, delay 5 ms`` or ``unshaped``."""
    parts = []
    if link.get("rate"):
        parts.append(f"rate {link['rate']}")
    if link.get("delay_ms"):
        parts.append(f"delay {link['delay_ms']:g} ms" + (f" ± {link['jitter_ms']:g} ms" if link.get("jitter_ms") else ""))
    if link.get("loss_pct"):
        parts.append(f"loss {link['loss_pct']:g}%")
    return ", ".join(parts) or "unshaped"


def _clear(h) -> None:
    run(["ip", "netns", "exec", h.name, "tc", "qdisc", "del", "dev", h.veths[1], "root"], check=False)


def apply_shaping(state: dict, link: dict) -> dict:
    """Shape each host's egress as ``link`` says (all None clears it); recorded in ``state``.

    Never leaves the link half-shaped: on a failure every host is cleared again.
    """
    for h in HOSTS:
        _, dev = h.veths
        _clear(h)
        for cmd in shaping.tc_commands(dev, link):
            proc = run(["ip", "netns", "exec", h.name, *cmd], check=False)
            if proc.returncode != 0:
                err = (proc.stderr or "").strip()
                for other in HOSTS:
                    _clear(other)
                state["link"] = empty_link()
                write_state(state)
                if "netem" in cmd and "unknown" in err.lower():
                    raise PrerequisiteError(
                        "this kernel has no netem qdisc, so delay, jitter and loss cannot be shaped (rate can: it uses tbf); the link is now unshaped",
                        hint="load it with `modprobe sch_netem` (a kernel built with CONFIG_NET_SCH_NETEM), or shape the rate only",
                    )
                raise HostError(f"tc on {h.name} failed: {err or proc.returncode}")
    state["link"] = dict(link)
    write_state(state)
    return dict(link)


def netem_available() -> bool:
    """Can this kernel's tc use netem?  (Probes on the loopback of the first host; the lab must be up.)"""
    ns = ["ip", "netns", "exec", HOSTS[0].name]
    test = run([*ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
    if test.returncode == 0:
        run([*ns, "tc", "qdisc", "del", "dev", "lo", "root"], check=False)
    return test.returncode == 0
