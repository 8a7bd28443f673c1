"""The embedded two-host lab, for real: daemons, migrations, shaping, idempotence,
recovery, and a clean ``down``.

Tests marked ``lab`` need root, libvirt and QEMU; the others check the plugin's
plain logic.  ``test_zz_down_leaves_nothing`` runs last in this module and brings
the lab back up for later modules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from typing import ClassVar

import pytest
from cli_runner import migflow, query
from migflow_lab import api as hosts
from migflow_lab import prereqs, shaping, system
from migflow_lab.daemons import MARKER
from migflow_lab.state import alive

from migflow.errors import PrerequisiteError, StepError, UsageError
from migflow.procs import command_name, process_start
from migflow.registry import HostPair

A, B = hosts.HOSTS


def _libvirt():
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


def _domain_xml(name: str, serial_path: str) -> str:
    """The lab's memory-dirtying guest (16 MiB working set at 8 MiB/s), heartbeat to a file."""
    from migflow_lab.guest import guest_image

    image = guest_image({"working_set_mib": 16, "dirty_rate_mibs": 8})
    kind = "kvm" if hosts.accel() == "kvm" else "qemu"
    return f"""<domain type='{kind}'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{image.kernel}</kernel><cmdline>{image.cmdline}</cmdline></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{serial_path}' append='on'/></serial>
  </devices>
</domain>"""


def _running_names(conn) -> set[str]:
    return {d.name() for d in conn.listAllDomains() if d.isActive()}


# -- plain logic (no lab needed) ---------------------------------------------------------


def test_lab_uris_and_pair():
    pair = hosts.host_pair()
    assert pair == HostPair("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system", lab=True)
    assert hosts.is_lab_uri("qemu+tcp://198.18.0.2/system")
    assert hosts.is_lab_uri("qemu+tcp://198.18.0.1:16509/system")
    assert not hosts.is_lab_uri("qemu+tls://a.example/system")
    assert not hosts.is_lab_uri("qemu:///system")
    assert not hosts.is_lab_uri(None)


def test_rates_and_tc_commands():
    assert shaping.parse_rate("1gbit") == 10**9
    assert shaping.parse_rate("100mbit") == 10**8
    assert shaping.parse_rate("500kbit") == 500_000
    for bad in ("1gb", "fast", "10 mbit", "-1mbit"):
        with pytest.raises(UsageError):
            shaping.parse_rate(bad)
    with pytest.raises(UsageError):
        shaping.normalize(jitter_ms=2)  # jitter without delay
    with pytest.raises(UsageError):
        shaping.normalize(loss_pct=101)
    link = shaping.normalize("1gbit", 5, 1, 0.1)
    cmds = shaping.tc_commands("eth9", link)
    assert cmds[0][:8] == ["tc", "qdisc", "add", "dev", "eth9", "root", "handle", "1:"]
    assert "netem" in cmds[0] and "5ms" in cmds[0] and "0.1%" in cmds[0]
    assert cmds[1][5:7] == ["parent", "1:1"] and "tbf" in cmds[1]
    assert shaping.tc_commands("eth9", shaping.normalize()) == []
    assert shaping.tc_commands("eth9", shaping.normalize("100mbit"))[0][5] == "root"


def test_shape_link_schema_validates_rates():
    import jsonschema

    schema = shaping.options_schema()
    jsonschema.validate({"rate": "100mbit", "delay_ms": 5, "loss_pct": 0.1}, schema)
    jsonschema.validate({"clear": True}, schema)
    for bad in ({"rate": "100mb"}, {"loss_pct": 150}, {"delay_ms": -1}, {"rat": "1gbit"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_shape_link_refuses_other_hosts():
    from migflow.plugins import get_plugins

    step = get_plugins().step("shape-link")

    class Ctx:
        hosts = HostPair("qemu+tls://a.example/system", "qemu+tls://b.example/system")
        state: ClassVar[dict] = {}

    with pytest.raises(StepError, match="only the embedded lab"):
        step.run(Ctx(), {"rate": "1gbit"})


def test_prerequisites_name_the_fix(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteError, match="root") as exc:
        hosts.check_prerequisites()
    assert "sudo" in exc.value.hint
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(prereqs, "which", lambda c: None if c in ("tc", "libvirtd") else f"/usr/bin/{c}")
    with pytest.raises(PrerequisiteError) as exc:
        hosts.check_prerequisites()
    assert "libvirtd" in exc.value.message and "tc" in exc.value.message and "iproute2" in exc.value.message
    assert "install-prereqs.sh" in exc.value.hint


def test_cli_lab_help_has_examples():
    out = migflow("lab", "shape", "--help")
    assert out.returncode == 0, out.stderr
    assert "migflow lab shape --rate 1gbit" in out.stdout and "--clear" in out.stdout


# -- the lab ------------------------------------------------------------------------------------


@pytest.mark.lab
def test_status_shape_and_daemons_reachable(lab):
    libvirt = _libvirt()
    out = migflow("lab", "status", "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["up"] is True
    assert st["accel"] in ("kvm", "tcg") and st["accel"] == hosts.accel()
    assert set(st["link"]) == {"rate", "delay_ms", "jitter_ms", "loss_pct"}
    assert [h["address"] for h in st["hosts"]] == ["198.18.0.1", "198.18.0.2"]
    assert [h["uri"] for h in st["hosts"]] == ["qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system"]
    uuids = set()
    for h in st["hosts"]:
        assert set(h) >= {"name", "address", "uri", "libvirtd_pid", "running", "domains"}
        assert h["running"] is True and isinstance(h["libvirtd_pid"], int)
        assert h["libvirtd_pid"] == hosts.libvirtd_pid(h["name"])
        assert isinstance(h["domains"], list)
        conn = libvirt.open(h["uri"])
        try:
            caps = ET.fromstring(conn.getCapabilities())
            uuids.add(str(uuid.UUID(caps.findtext("host/uuid"))))
        finally:
            conn.close()
    assert len(uuids) == 2, "both hosts report the same host UUID: libvirt would refuse to migrate"


@pytest.mark.lab
def test_host_exec_runs_inside_the_host(lab):
    out = hosts.run_on("mflab-a", ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True)
    assert "198.18.0.1/24" in out.stdout and "198.18.0.2" not in out.stdout
    # the host's private mount namespace: its own /etc/libvirt
    conf = hosts.run_on("b", ["cat", "/etc/libvirt/libvirtd.conf"], capture_output=True, text=True, check=True).stdout
    assert 'listen_addr = "198.18.0.2"' in conf


@pytest.fixture
def test_domain(lab):
    """A minimal domain running on host A; destroyed wherever it ended up afterwards."""
    libvirt = _libvirt()
    name = f"mflab-test-{os.getpid()}"
    serial = f"/var/tmp/migflow/serial/{name}.log"
    os.makedirs(os.path.dirname(serial), exist_ok=True)
    if os.path.exists(serial):
        os.unlink(serial)
    conn_a = libvirt.open(A.uri)
    dom = conn_a.createXML(_domain_xml(name, serial), 0)
    yield name, dom, serial
    for h in (A, B):
        conn = libvirt.open(h.uri)
        try:
            d = conn.lookupByName(name)
            d.destroy()
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    conn_a.close()
    if os.path.exists(serial):
        os.unlink(serial)


@pytest.mark.lab
def test_migrate_managed_direct_and_p2p(lab, test_domain):
    libvirt = _libvirt()
    from migflow_lab.heartbeat import HeartbeatMonitor

    name, dom, serial = test_domain
    conn_a, conn_b = libvirt.open(A.uri), libvirt.open(B.uri)
    beat = HeartbeatMonitor(serial).start()

    def still_dirtying(where: str) -> None:
        seen = beat.heartbeats
        assert beat.wait(seen + 200, timeout=20), f"the guest stopped beating on {where}"
        time.sleep(1.2)  # a status line a second
        assert beat.dirty_rate_mibs() is not None and 1 <= beat.dirty_rate_mibs() <= 12, beat.dirty_rate_mibs()

    try:
        still_dirtying("host a")
        assert name in _running_names(conn_a)
        assert hosts.qemu_pids("a"), "no QEMU process inside host a's namespace"
        # stdio_handler = "file": the domain runs without virtlogd
        in_lab = system.pids_in_netns({system.netns_inode(h.name) for h in hosts.HOSTS})
        assert not [p for p in in_lab if command_name(p) == "virtlogd"]
        # A -> B, managed direct: this client talks to both daemons
        new = dom.migrate(conn_b, libvirt.VIR_MIGRATE_LIVE, None, None, 0)
        assert new is not None and new.name() == name
        assert name in _running_names(conn_b) and name not in _running_names(conn_a)
        still_dirtying("host b")
        # B -> A, peer to peer: host b's daemon talks to host a's
        conn_b.lookupByName(name).migrateToURI3(A.uri, {}, libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER)
        assert name in _running_names(conn_a) and name not in _running_names(conn_b)
        still_dirtying("host a again")
        st = hosts.status()
        assert [d["name"] for d in st["hosts"][0]["domains"]] == [name]
        assert st["hosts"][1]["domains"] == []
    finally:
        beat.stop()
        conn_a.close()
        conn_b.close()


_RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20)
n, first = 0, None
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if first is None:
        first = time.monotonic()
    n += len(b)
print(n, time.monotonic() - first, flush=True)
"""

_SENDER = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
buf = b"x" * (1 << 16); end = time.monotonic() + float(sys.argv[3]); sent = 0
while time.monotonic() < end and sent < int(sys.argv[4]):
    sent += c.send(buf)
c.close()
"""


def _throughput_mbit(seconds: float = 3.0, max_bytes: int = 300 << 20) -> float:
    """TCP throughput host a -> host b, measured by the receiver, in Mbit/s."""
    port = "5201"
    recv = subprocess.Popen(hosts.command_on("b", [sys.executable, "-c", _RECEIVER, B.address, port]), stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout.readline().strip() == "ready"
        hosts.run_on("a", [sys.executable, "-c", _SENDER, B.address, port, str(seconds), str(max_bytes)], check=True, timeout=30)
        out, _ = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    nbytes, secs = out.split()
    return int(nbytes) * 8 / float(secs) / 1e6


@pytest.mark.lab
def test_shaping_rate_limits_throughput(lab):
    before = hosts.status()["link"]
    try:
        hosts.shape(rate="50mbit")
        assert hosts.status()["link"]["rate"] == "50mbit"
        low = _throughput_mbit()
        hosts.shape(rate="200mbit")
        high = _throughput_mbit()
    finally:
        hosts.shape(**before)
    assert 25 <= low <= 60, f"50mbit link measured {low:.1f} Mbit/s"
    assert 100 <= high <= 230, f"200mbit link measured {high:.1f} Mbit/s"
    assert high > 2 * low
    qd = subprocess.run(["tc", "-n", A.name, "qdisc", "show", "dev", f"{A.name}-in"], check=False, capture_output=True, text=True).stdout
    assert ("tbf" in qd) == bool(before.get("rate"))


@pytest.mark.lab
def test_shape_link_step_records_link(lab):
    from migflow.plugins import get_plugins

    step = get_plugins().step("shape-link")

    class Ctx:
        hosts = hosts.host_pair()
        state: ClassVar[dict] = {}

    ctx = Ctx()
    before = hosts.status()["link"]
    try:
        step.run(ctx, {"rate": "100mbit"})
        assert ctx.state["link"]["rate"] == "100mbit"
        assert hosts.status()["link"]["rate"] == "100mbit"
        step.run(ctx, {"clear": True})
        assert ctx.state["link"] == {"rate": None, "delay_ms": None, "jitter_ms": None, "loss_pct": None}
    finally:
        hosts.shape(**before)


SHAPING_WORKFLOW = """
name = "shaped"
repetitions = 1
[domain.create]
memory_mib = 128
[domain.create.workload]
working_set_mib = 8
dirty_rate_mibs = 4
[[steps]]
use = "prepare-domain"
[[steps]]
use = "shape-link"
rate = "200mbit"
[[steps]]
use = "migrate"
mode = "{mode}"
[[steps]]
use = "collect-qmp"
[[steps]]
use = "restore"
"""


@pytest.mark.lab
@pytest.mark.parametrize("mode, status", [("p2p", "completed"), ("unmanaged-direct", "failed")])
def test_a_workflow_that_shapes_the_link_leaves_it_as_it_was(lab, tmp_path, mode, status):
    """The legs and the run record the shaping in force; afterwards, also after a failed run, the link is back."""
    before = hosts.status()["link"]
    (tmp_path / "w.toml").write_text(SHAPING_WORKFLOW.format(mode=mode))
    proc = migflow("run", tmp_path / "w.toml", "--results", tmp_path / "r.duckdb", timeout=600)
    try:
        assert proc.returncode == (0 if status == "completed" else 1), proc.stdout + proc.stderr
        shown = migflow("lab", "status", "--json")
        assert shown.returncode == 0, shown.stderr
        after = json.loads(shown.stdout)
        assert after["link"] == before, (before, after["link"])
        [(run_status, env)] = query(tmp_path / "r.duckdb", "SELECT status, environment FROM runs")
        [(leg_link,)] = query(tmp_path / "r.duckdb", "SELECT link FROM migrations")
        assert run_status == status
        assert json.loads(env)["link"]["rate"] == "200mbit" and json.loads(env)["accel"] == lab["accel"]
        assert json.loads(leg_link)["rate"] == "200mbit"
    finally:
        hosts.shape(**before)


@pytest.mark.lab
def test_delay_shaping_or_clear_error(lab):
    """netem may be missing from the kernel: then shaping a delay must say so clearly."""
    before = hosts.status()["link"]
    try:
        if hosts.netem_available():
            hosts.shape(delay_ms=20)
            out = hosts.run_on("a", ["ping", "-c", "3", "-i", "0.2", B.address], capture_output=True, text=True)
            assert out.returncode == 0, out.stdout + out.stderr
            avg = float(out.stdout.rsplit("=", 1)[1].split("/")[1])
            assert avg >= 35, f"rtt {avg} ms with 20 ms each way"
        else:
            with pytest.raises(PrerequisiteError, match="netem"):
                hosts.shape(delay_ms=20)
            assert hosts.status()["link"]["delay_ms"] is None
    finally:
        hosts.shape(**before)


@pytest.mark.lab
def test_prepare_hosts_and_default_hosts(lab):
    from migflow.plugins import get_plugins

    hook = get_plugins().hook
    assert hook.migflow_default_hosts() == hosts.host_pair()
    lines: list[str] = []
    hook.migflow_prepare_hosts(hosts=hosts.host_pair(), echo=lines.append)  # up already: silent
    hook.migflow_prepare_hosts(hosts=HostPair("qemu+tls://a.example/system", "qemu+tls://b.example/system"), echo=lines.append)
    assert lines == []


@pytest.mark.lab
def test_up_twice_is_idempotent(lab):
    before_state = hosts.STATE_FILE.read_bytes()
    before_mtime = hosts.STATE_FILE.stat().st_mtime_ns
    pids = [hosts.libvirtd_pid(h) for h in hosts.HOSTS]
    lines: list[str] = []
    st = hosts.up(echo=lines.append)
    assert st["up"] and lines == ["lab: already up"]
    assert [h["libvirtd_pid"] for h in st["hosts"]] == pids
    assert hosts.STATE_FILE.read_bytes() == before_state
    assert hosts.STATE_FILE.stat().st_mtime_ns == before_mtime


def _a_guest_then_both_daemons_killed() -> tuple[str, list[int], list[int]]:
    """A transient guest on host a, then SIGKILL to both lab daemons: (its name, its QEMU PIDs, the daemons' PIDs)."""
    libvirt = _libvirt()
    name = f"mflab-orphan-{os.getpid()}"
    conn = libvirt.open(A.uri)
    os.makedirs("/var/tmp/migflow/serial", exist_ok=True)
    conn.createXML(_domain_xml(name, f"/var/tmp/migflow/serial/{name}.log"), 0)
    conn.close()
    guests = hosts.qemu_pids("a")
    assert guests
    state = json.loads(hosts.STATE_FILE.read_text())
    old = [e["pid"] for e in state["pids"]]
    assert len(old) == 2, state["pids"]  # the two daemons, no dead predecessor
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    # until both are gone, not merely until the lab is no longer up: that is when the
    # first one has died, and the other may still hold its socket open
    deadline = time.monotonic() + 10
    while any(process_start(p) for p in old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_start(p) for p in old), old
    assert not hosts.is_up()
    return name, guests, old


def test_repair_restarts_a_daemon_that_was_still_dying_when_first_looked_at(monkeypatch, tmp_path):
    """Both daemons killed, host a's not yet gone when `up` first looks (alive, its socket
    still open): the repair's second look finds it gone and starts it too, instead of
    giving up on a lab that is whole and tearing down its guests."""
    from migflow_lab import lifecycle

    dying = {"mflab-a": 1}  # looks alive this many more times
    started: list[str] = []

    def fake_alive(entry):
        name = entry["name"]
        if name in started:
            return True
        if dying.get(name, 0) > 0:
            dying[name] -= 1
            return True
        return False

    def fake_start(h, state, echo):
        started.append(h.name)
        state["hosts"][h.name] = {"libvirtd": {"name": h.name}}

    monkeypatch.setattr(lifecycle, "link_exists", lambda _: True)
    monkeypatch.setattr(lifecycle, "netns_list", lambda: [h.name for h in lifecycle.HOSTS])
    monkeypatch.setattr(lifecycle, "port_open", lambda *_: True)
    monkeypatch.setattr(lifecycle, "alive", fake_alive)
    monkeypatch.setattr(lifecycle, "start_daemon", fake_start)
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca-cert.pem").write_text("")
    monkeypatch.setattr(lifecycle, "LAB_ROOT", tmp_path)
    state = {"hosts": {h.name: {"libvirtd": {"name": h.name}} for h in lifecycle.HOSTS}}
    lines: list[str] = []
    assert lifecycle._repair(state, lines.append) is True
    assert sorted(started) == ["mflab-a", "mflab-b"]
    assert sum("is gone; starting it again" in ln for ln in lines) == 2, lines


@pytest.mark.lab
def test_up_restarts_killed_daemons_and_their_guests_survive(lab):
    """Both lab daemons killed: `up` starts them again in the whole lab, and a guest
    that was running on host a is still running there, under the new daemon."""
    libvirt = _libvirt()
    name, guests, old = _a_guest_then_both_daemons_killed()
    lines: list[str] = []
    st = hosts.up(echo=lines.append)
    try:
        assert st["up"]
        new = [h["libvirtd_pid"] for h in st["hosts"]]
        assert all(new) and not set(new) & set(old)
        assert sum("is gone; starting it again" in ln for ln in lines) == 2, lines
        assert not any("removing leftovers" in ln for ln in lines), lines
        assert all(process_start(p) for p in guests), "the guest's QEMU died with its daemon"
        by_name = {h["name"]: h["domains"] for h in st["hosts"]}
        assert [d["name"] for d in by_name["mflab-a"]] == [name], by_name
        assert by_name["mflab-b"] == []
        # listed is not yet kept: the new daemon reconnects to the guest's QEMU in the background
        # and drops the domain when that fails.  A monitor query waits for the reconnection (a
        # libvirt job) and is answered by that very QEMU.
        status = _guest_status(libvirt, name)
        assert status == "running", f"{status}\n{_daemon_errors(A.name, name)}"
    finally:
        conn = libvirt.open(A.uri)
        try:
            conn.lookupByName(name).destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone: the assertion above said why
                raise
        finally:
            conn.close()


def _guest_status(libvirt, name: str) -> str:
    """The guest's run state as its QEMU tells host a's daemon, or "gone: ..." when that daemon dropped it."""
    import libvirt_qemu

    conn = libvirt.open(A.uri)
    try:
        reply = libvirt_qemu.qemuMonitorCommand(conn.lookupByName(name), '{"execute": "query-status"}', 0)
        return json.loads(reply)["return"]["status"]
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return f"gone: {exc.get_error_message()}"
    finally:
        conn.close()


#: what every lab daemon logs at start or on each client's TLS probe: not about the guest
_DAEMON_NOISE = (
    "virNetSocketReadWire", "virNetTLSSessionHandshake", "dnsmasq", "virGDBusGetSystemBus", "networkStateInitialize",
    "udevGetDMIData", "dmidecode", "virSecurityManagerNew", "qemuDomainObjTaintMsg",
)  # fmt: skip


def _daemon_errors(host: str, guest: str) -> str:
    """The lab daemon's errors and warnings and the guest's QEMU log, for a failure message."""
    log = hosts.LAB_ROOT / host / "log"
    daemon = [
        ln
        for ln in (log / "libvirtd.log").read_text(errors="replace").splitlines()
        if (": error :" in ln or ": warning :" in ln) and not any(n in ln for n in _DAEMON_NOISE)
    ]
    qemu_log = log / "qemu" / f"{guest}.log"
    qemu = qemu_log.read_text(errors="replace").splitlines() if qemu_log.exists() else []
    return "\n".join(["libvirtd.log:", *daemon[-15:], f"{qemu_log.name}:", *qemu[-8:]])


@pytest.mark.lab
def test_up_rebuilds_a_broken_lab_and_ends_the_old_guests(lab):
    """Daemons killed and the lab no longer whole (its VM bridge gone): `up` removes
    the leftovers, the old lab's QEMU included, and builds the lab again."""
    from migflow_lab.topology import VM_BRIDGE

    _name, orphans, old = _a_guest_then_both_daemons_killed()
    subprocess.run(["ip", "link", "del", VM_BRIDGE], check=True)
    lines: list[str] = []
    st = hosts.up(echo=lines.append)
    assert st["up"]
    assert "lab: removing leftovers of an earlier lab" in lines, lines
    new = [h["libvirtd_pid"] for h in st["hosts"]]
    assert all(new) and not set(new) & set(old)
    assert all(h["domains"] == [] for h in st["hosts"])
    assert not any(process_start(p) for p in orphans), "the QEMU of the broken lab is still running"


def _mount_lines_mentioning(paths: tuple[str, ...]) -> list[str]:
    """Mount lines of every mount namespace on the machine that mention a lab path."""
    seen, hits = set(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ns = os.stat(f"/proc/{pid}/ns/mnt").st_ino
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{pid}/mountinfo") as f:
                hits += [ln for ln in f if any(p in ln for p in paths)]
        except OSError:
            continue
    return hits


@pytest.mark.lab
def test_zz_down_leaves_nothing(lab):
    """Runs last in this module: down removes everything; then the lab comes back up."""
    state = json.loads(hosts.STATE_FILE.read_text())
    lines: list[str] = []
    hosts.down(echo=lines.append)
    assert lines[-1] == "lab: down"
    netns = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    assert not any(h.name in netns for h in hosts.HOSTS), netns
    links = subprocess.run(["ip", "-o", "link", "show"], check=False, capture_output=True, text=True).stdout
    assert "mflab" not in links, links
    assert not any(alive(e) for e in state["pids"]), "a process the lab started is still alive"
    assert not _mount_lines_mentioning((str(hosts.LAB_ROOT), "/run/netns/mflab")), "leftover mounts"
    assert not hosts.STATE_FILE.exists()
    assert not hosts.LAB_ROOT.exists(), list(hosts.LAB_ROOT.rglob("*"))[:10]  # the hosts' folders, disks and the TLS CA too
    assert not system.marked_pids(MARKER)
    again: list[str] = []
    hosts.down(echo=again.append)
    assert again == ["lab: already down; nothing to do"]
    assert hosts.status()["up"] is False
    # later test modules use the lab: bring it back the way `migflow run` does
    from migflow.plugins import get_plugins

    lines = []
    get_plugins().hook.migflow_prepare_hosts(hosts=hosts.host_pair(), echo=lines.append)
    assert lines[0] == "the lab is down; bringing it up (migflow lab up)"
    assert hosts.is_up()
