"""The qemu backend (QEMU without libvirt).

End to end on the lab: it migrates the lab guest both ways, fills the same
tables and columns as the libvirt backend (one SQL query compares them), keeps
the source's final query-migrate raw, and leaves no QEMU process behind; what
it cannot do is refused by name (those tests need no lab)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parent.parent
STAT_COLUMNS = (
    "total_time",
    "setup_time",
    "downtime",
    "ram_total",
    "ram_transferred",
    "ram_remaining",
    "ram_normal",
    "ram_normal_bytes",
    "ram_duplicate",
    "ram_page_size",
    "ram_mbps",
    "ram_dirty_sync_count",
    "guest_pause_ms",
)


def migflow(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "migflow", *args], check=False, capture_output=True, text=True, timeout=timeout)


def query(db, sql, *params):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def _alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


@pytest.fixture(scope="module")
def both(lab, tmp_path_factory):
    """One results file: qemu_tcp.toml (2 runs) and managed_direct.toml (1 run) on the same lab and guest."""
    db = tmp_path_factory.mktemp("qemu") / "results.duckdb"
    qemu = migflow("run", str(ROOT / "workflows" / "qemu_tcp.toml"), "--results", str(db))
    libvirt = migflow("run", str(ROOT / "workflows" / "managed_direct.toml"), "-n", "1", "--results", str(db))
    return db, qemu, libvirt


@pytest.mark.lab
def test_qemu_backend_migrates_both_ways_and_fills_the_statistics(both):
    db, proc, _ = both
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = query(db, "SELECT run_id, status, host_versions FROM runs WHERE backend = 'qemu' ORDER BY plan_index")
    assert [r[1] for r in runs] == ["completed", "completed"]
    versions = json.loads(runs[0][2])
    for role in ("source", "destination"):
        assert versions[role]["hypervisor"] == "QEMU" and versions[role]["hypervisor_version"].count(".") == 2
    assert versions["source"]["version_from"] == "query-version"
    cols = ", ".join(STAT_COLUMNS)
    legs = query(
        db,
        f"""SELECT m.run_id, leg, source, destination, mode, m.status, wall_ms, {cols}, stats, m.extra
                         FROM migrations m JOIN runs r USING (run_id) WHERE r.backend = 'qemu' ORDER BY m.run_id, leg""",
    )
    assert len(legs) == 4
    for row in legs:
        run_id, leg, source, destination, mode, status, wall = row[:7]
        stats_cols = dict(zip(STAT_COLUMNS, row[7 : 7 + len(STAT_COLUMNS)], strict=True))
        stats, extra = json.loads(row[-2]), json.loads(row[-1])
        assert mode == "qmp-tcp" and status == "completed"
        assert all(v is not None for v in stats_cols.values()), stats_cols
        # leg 1 goes a -> b, leg 2 comes back
        assert ("198.18.0.1" in source) == (leg == 1) and ("198.18.0.2" in destination) == (leg == 1)
        assert stats_cols["ram_total"] >= 256 * 2**20 * 0.95 and stats_cols["ram_page_size"] == 4096
        assert stats_cols["ram_normal_bytes"] == stats_cols["ram_normal"] * 4096 <= stats_cols["ram_transferred"]
        assert 0 < stats_cols["total_time"] <= wall + 1  # QEMU's time within the client's migrate -> completed
        assert 0 <= stats_cols["downtime"] <= stats_cols["total_time"]
        # the source's final query-migrate, raw: QMP-only fields, no libvirt translation
        assert stats["status"] == "completed" and "multifd-bytes" in stats["ram"] and "libvirt" not in stats
        assert stats["ram"]["transferred"] == stats_cols["ram_transferred"]
        assert extra["source_exit"] == "quit" and extra["destination_state"] == "running"
        assert extra["in_force"]["parameters"]["max-bandwidth"] > 2**40  # libvirt's unlimited default
        [(n,)] = query(db, "SELECT count(*) FROM samples WHERE run_id = ? AND leg = ?", run_id, leg)
        assert n >= 1
    for (result,) in query(db, "SELECT s.result FROM steps s JOIN runs r USING (run_id) WHERE r.backend = 'qemu' AND step = 'restore'"):
        assert json.loads(result)["found"] == {"source": "running"}


@pytest.mark.lab
def test_nothing_left_running(both):
    from migflow_lab import api as hosts

    db, proc, _ = both
    assert proc.returncode == 0, proc.stderr
    pids = set()
    for (extra,) in query(db, "SELECT m.extra FROM migrations m JOIN runs r USING (run_id) WHERE r.backend = 'qemu'"):
        pids |= set(json.loads(extra)["pids"].values())
    for (result,) in query(db, "SELECT s.result FROM steps s JOIN runs r USING (run_id) WHERE r.backend = 'qemu' AND step in ('prepare-domain', 'restore')"):
        r = json.loads(result)
        pids |= {r["pid"]} if "pid" in r else set(r.get("pids", {}).values())
    assert len(pids) >= 6  # 2 runs x (source, leg-1 destination, leg-2 destination)
    assert not [p for p in pids if _alive(p)]
    lab_qemus = set(hosts.qemu_pids("mflab-a")) | set(hosts.qemu_pids("mflab-b"))
    assert not pids & lab_qemus
    run_ids = [r for (r,) in query(db, "SELECT run_id FROM runs WHERE backend = 'qemu'")]
    assert not any(os.path.exists(f"/var/tmp/migflow/qemu/{r}") for r in run_ids)  # sockets and logs removed


@pytest.mark.lab
def test_both_backends_compare_in_one_query(both):
    db, _qemu, libvirt = both
    assert libvirt.returncode == 0, libvirt.stdout + libvirt.stderr
    rows = query(
        db,
        """SELECT r.backend, count(*), count(total_time), count(downtime), count(ram_transferred),
                               count(ram_dirty_sync_count), count(guest_pause_ms), bool_and(total_time <= wall_ms + 1),
                               median(wall_ms - total_time)
                        FROM migrations m JOIN runs r USING (run_id) WHERE m.status = 'completed'
                        GROUP BY r.backend ORDER BY r.backend""",
    )
    assert [r[0] for r in rows] == ["libvirt", "qemu"]
    for backend, n, *counts, within, _overhead in rows:
        assert all(c == n for c in counts), (backend, n, counts)
        assert within
    overhead = {r[0]: r[-1] for r in rows}
    assert overhead["libvirt"] > overhead["qemu"]  # what libvirt adds around QEMU's migration


@pytest.mark.lab
def test_timeout_abort_leaves_the_guest_on_its_source_and_nothing_running(lab, tmp_path):
    wf = tmp_path / "slow.toml"
    wf.write_text("""name = "qemu_slow"
backend = "qemu"
[domain.create]
memory_mib = 256
[domain.create.workload]
working_set_mib = 64
dirty_rate_mibs = 32
[[steps]]
use = "prepare-domain"
[[steps]]
use = "set-capabilities"
parameters = { max-bandwidth = 1048576 }
[[steps]]
use = "migrate"
mode = "qmp-tcp"
expect = "failure"
timeout = { seconds = 1, action = "abort" }
[[steps]]
use = "collect-qmp"
[[steps]]
use = "restore"
""")
    db = tmp_path / "r.duckdb"
    proc = migflow("run", str(wf), "--results", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [(status, error, extra, stats)] = query(db, "SELECT status, error, extra, stats FROM migrations")
    assert status == "failed" and error.startswith("timed out after 1 s (abort)"), error
    assert json.loads(stats)["status"] == "cancelled"  # the source's own final view
    [(result,)] = query(db, "SELECT result FROM steps WHERE step = 'restore'")
    assert json.loads(result)["found"] == {"source": "running"}
    assert not [p for p in json.loads(extra)["pids"].values() if _alive(p)]


@pytest.mark.lab
def test_local_hosts_without_the_lab(tmp_path):
    """qemu+local://: both QEMUs on this machine, migrating over loopback addresses."""
    db = tmp_path / "r.duckdb"
    proc = migflow(
        "run", str(ROOT / "workflows" / "qemu_tcp.toml"), "-n", "1", "--src", "qemu+local://127.0.0.1", "--dst", "qemu+local://127.0.0.2", "--results", str(db)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = query(db, "SELECT status, stats->>'$.status', destination FROM migrations ORDER BY leg")
    assert rows == [("completed", "completed", "qemu+local://127.0.0.2"), ("completed", "completed", "qemu+local://127.0.0.1")]


@pytest.mark.lab
def test_one_line_switches_a_workflow_to_the_qemu_backend(lab, tmp_path):
    """managed_direct.toml names no mode: adding `backend = "qemu"` runs it without libvirt."""
    text = (ROOT / "workflows" / "managed_direct.toml").read_text()
    switched = tmp_path / "switched.toml"
    switched.write_text('backend = "qemu"\n' + text)
    db = tmp_path / "r.duckdb"
    proc = migflow("run", str(switched), "-n", "1", "--results", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert query(db, "SELECT DISTINCT r.backend, m.mode, m.status FROM migrations m JOIN runs r USING (run_id)") == [("qemu", "qmp-tcp", "completed")]


# -- what the qemu backend refuses, at validation time (no lab) ---------------------------------------------------

HEADER = """name = "{name}"
backend = "{backend}"
round_trip = true
{matrix}
[domain.create]
memory_mib = 256
{guest}
[domain.create.workload]
working_set_mib = {ws}
dirty_rate_mibs = {rate}

[[steps]]
use = "prepare-domain"
{prepare}
"""


def workflow(tmp_path, name, steps, *, backend="qemu", matrix="", guest="", ws=64, rate=32, prepare=""):
    """A workflow file: the lab guest, prepare-domain, ``steps`` (TOML), collect-qmp and restore."""
    path = tmp_path / f"{name}.toml"
    head = HEADER.format(name=name, backend=backend, matrix=matrix, guest=guest, ws=ws, rate=rate, prepare=prepare)
    path.write_text(head + steps + '\n[[steps]]\nuse = "collect-qmp"\n\n[[steps]]\nuse = "restore"\n')
    return path


def issues_of(path) -> dict[str, list[str]]:
    """``migflow validate``'s issues, by JSON path."""
    from migflow.plugins import get_plugins
    from migflow.workflow.loader import validate_file

    out: dict[str, list[str]] = {}
    for issue in validate_file(str(path), get_plugins()):
        out.setdefault(issue.path, []).append(issue.message)
    return out


LIBVIRT_ONLY = """
[[steps]]
use = "migrate"
mode = "qmp-multifd"
flags = ["copy-storage-all", "copy-storage-inc", "copy-storage-synchronous-writes", "offline", "change-protection"]
dname = "elsewhere"
listen_address = "198.18.0.2"
migrate_disks = ["vda"]
disks_port = 49153
destination_xml = { title = "t" }
persistent_xml = { title = "t" }
"""


def test_validate_refuses_libvirt_only_flags_options_and_the_linux_guest(tmp_path):
    found = issues_of(workflow(tmp_path, "libvirt_only", LIBVIRT_ONLY, guest='guest = "linux"'))
    mode = found.pop("steps[1].mode")
    for flag in ("copy-storage-all", "copy-storage-inc", "copy-storage-synchronous-writes", "offline", "change-protection"):
        [message] = [m for m in mode if m.startswith(f"mode 'qmp-multifd' cannot be combined with {flag}:")]
        assert len(message) > len(f"mode 'qmp-multifd' cannot be combined with {flag}: ") + 10  # with its reason
    assert len(mode) == 5, mode
    for option in ("dname", "listen_address", "migrate_disks", "disks_port", "destination_xml", "persistent_xml"):
        [message] = found.pop(f"steps[1].{option}")
        assert message.startswith(f"{option} is a libvirt option the qemu backend cannot honour: "), message
    [guest] = found.pop("domain.create.guest")
    assert "tiny guest only" in guest and "libvirt" in guest
    assert not found, found  # nothing else


def test_the_same_options_are_the_libvirt_backends_business(tmp_path):
    """The qemu plugin's checks apply to qemu workflows only."""
    text = LIBVIRT_ONLY.replace('"qmp-multifd"', '"p2p"').replace('"offline", "change-protection"', '"persistent"')
    found = issues_of(workflow(tmp_path, "on_libvirt", text, backend="libvirt"))
    assert not [m for ms in found.values() for m in ms if "qemu" in m], found


@pytest.mark.parametrize(
    "steps, path, words",
    [
        (
            'mode = "qmp-tcp"\nflags = ["postcopy"]\npostcopy_switch = { after_iterations = 1 }',
            "steps[1].postcopy_switch",
            "postcopy_switch is not implemented by the qemu backend yet",
        ),
    ],
)
def test_validate_refuses_impossible_combinations(tmp_path, steps, path, words):
    found = issues_of(workflow(tmp_path, "combo", f'\n[[steps]]\nuse = "migrate"\n{steps}\n'))
    assert list(found) == [path], found
    [message] = found[path]
    assert message.startswith(words), message
