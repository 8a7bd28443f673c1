"""The qemu backend (QEMU without libvirt).

End to end on the lab: it migrates the lab guest both ways, fills the same
tables and columns as the libvirt backend (one SQL query compares them), keeps
the source's final query-migrate raw, and leaves no QEMU process behind; its
QEMU-only features (zero-copy, post-copy switching, multifd compression, TLS)
migrate for real, and what it cannot do is refused by name.  The validation
tests and the read-back checks need no lab."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_runner import migflow, migflow_args, query, query_dicts

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
        f"""SELECT m.run_id, leg, source, destination, mode, m.status, wall_ms, {cols}, stats, m.in_force, m.extra
                         FROM migrations m JOIN runs r USING (run_id) WHERE r.backend = 'qemu' ORDER BY m.run_id, leg""",
    )
    assert len(legs) == 4
    for row in legs:
        run_id, leg, source, destination, mode, status, wall = row[:7]
        stats_cols = dict(zip(STAT_COLUMNS, row[7 : 7 + len(STAT_COLUMNS)], strict=True))
        stats, in_force, extra = json.loads(row[-3]), json.loads(row[-2]), json.loads(row[-1])
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
        assert in_force["parameters"]["max-bandwidth"] > 2**40  # libvirt's unlimited default (its own column, not in extra)
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
        ('mode = "qmp-tcp"\nflags = ["zerocopy"]', "steps[1].flags", "zerocopy needs multifd"),
        ('mode = "qmp-multifd"\nflags = ["zerocopy", "compressed"]', "steps[1].flags", "zerocopy works without compression"),
        ('mode = "qmp-multifd"\nflags = ["zerocopy", "tls"]', "steps[1].flags", "zerocopy works without TLS"),
        ('mode = "qmp-tcp"\npostcopy_switch = { after_iterations = 1 }', "steps[1].postcopy_switch", "postcopy_switch needs the postcopy flag"),
    ],
)
def test_validate_refuses_impossible_combinations(tmp_path, steps, path, words):
    found = issues_of(workflow(tmp_path, "combo", f'\n[[steps]]\nuse = "migrate"\n{steps}\n'))
    assert list(found) == [path], found
    [message] = found[path]
    assert message.startswith(words), message


def test_validate_refuses_zerocopy_with_multifd_compression(tmp_path):
    steps = '\n[[steps]]\nuse = "set-capabilities"\nparameters = { multifd-compression = "zstd" }\n\n[[steps]]\nuse = "migrate"\nmode = "qmp-multifd"\nflags = ["zerocopy"]\n'
    found = issues_of(workflow(tmp_path, "zc_zstd", steps))
    assert list(found) == ["steps[2].flags"] and found["steps[2].flags"][0].startswith("zerocopy works without compression"), found


@pytest.mark.parametrize(
    "steps",
    [
        '\n[[steps]]\nuse = "migrate"\nmode = "qmp-multifd"\nflags = ["zerocopy"]\n',
        '\n[[steps]]\nuse = "migrate"\nmode = "qmp-tcp"\nflags = ["parallel", "zerocopy"]\n',
        '\n[[steps]]\nuse = "migrate"\nmode = "qmp-multifd"\nflags = ["tls"]\n',
        '\n[[steps]]\nuse = "set-capabilities"\ncapabilities = { postcopy-ram = true }\n\n[[steps]]\nuse = "migrate"\npostcopy_switch = { when_stalled = 2 }\n',
        '\n[[steps]]\nuse = "set-capabilities"\ncapabilities = { dirty-limit = true }\nparameters = { vcpu-dirty-limit = 10, zero-page-detection = "none" }\n\n[[steps]]\nuse = "migrate"\n',
    ],
    ids=["zerocopy", "parallel-zerocopy", "tls", "postcopy-switch", "newer-qemu-names"],
)
def test_validate_accepts_what_the_qemu_backend_does(tmp_path, steps):
    """(Names a newer QEMU brings are accepted here: only the host's QEMU can say whether it has them.)"""
    assert issues_of(workflow(tmp_path, "fine", steps)) == {}


# -- reading back what QEMU has in force (no lab: a QEMU stand-in) -------------------------------------------------


class FakeQemu:
    """QMP answers of a QEMU ``version`` that offers ``caps``/``params`` and keeps, of what it
    is told, only what ``applies`` accepts (QEMU before 9.0 keeps the multifd levels at 1)."""

    def __init__(self, version, caps, params, applies=lambda name: True):
        from types import SimpleNamespace

        self.version, self.caps, self.params, self.applies = version, dict(caps), dict(params), applies
        self.host = SimpleNamespace(name="mflab-x")
        self.facts: dict = {}

    def call(self, proc, command, arguments=None, timeout=30.0):
        assert proc is self
        major, minor, micro = map(int, self.version.split("."))
        if command == "query-version":
            return {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": ""}
        if command == "query-migrate-capabilities":
            return [{"capability": c, "state": s} for c, s in self.caps.items()]
        if command == "query-migrate-parameters":
            return dict(self.params)
        if command == "query-qmp-schema":
            members = [{"name": n} for n in self.params]
            return [{"name": "migrate-set-parameters", "meta-type": "command", "arg-type": "42"}, {"name": "42", "meta-type": "object", "members": members}]
        if command == "migrate-set-capabilities":
            self.caps.update({c["capability"]: c["state"] for c in arguments["capabilities"] if self.applies(c["capability"])})
            return {}
        if command == "migrate-set-parameters":
            self.params.update({k: v for k, v in arguments.items() if self.applies(k)})
            return {}
        raise AssertionError(command)


QEMU_72_PARAMS = {"multifd-compression": "none", "multifd-zlib-level": 1, "multifd-zstd-level": 1, "max-bandwidth": 134217728, "tls-creds": ""}


@pytest.fixture
def fake_qemu(monkeypatch):
    import migflow_qemu.backend as backend

    def make(*args, **kwargs):
        fake = FakeQemu(*args, **kwargs)
        monkeypatch.setattr(backend, "_qmp_call", fake.call)
        return fake, backend.QemuBackend("qemu+lab://mflab-a", "qemu+lab://mflab-b")

    return make


def test_a_level_qemu_accepts_and_does_not_apply_fails_naming_all_of_it(fake_qemu):
    from migflow.errors import StepError

    fake, b = fake_qemu("7.2.22", {"multifd": False}, QEMU_72_PARAMS, applies=lambda name: not name.endswith("-level"))
    with pytest.raises(StepError) as err:
        b._apply(fake, {"multifd": True}, {"multifd-compression": "zlib", "multifd-zlib-level": 7, "max-bandwidth": 2**30})
    assert err.value.message == (
        "QEMU 7.2.22 on mflab-x accepted multifd-zlib-level = 7 but reports 1 (query-migrate-parameters): the migration would run with 1"
    )
    assert err.value.hint and "before 9.0" in err.value.hint and "only level 1" in err.value.hint
    assert fake.caps["multifd"] is True and fake.params["multifd-compression"] == "zlib"  # the rest was applied


def test_a_qemu_that_applies_what_it_is_told_passes(fake_qemu):
    fake, b = fake_qemu("9.0.0", {"multifd": False}, QEMU_72_PARAMS)
    b._apply(fake, {"multifd": True}, {"multifd-compression": "zstd", "multifd-zstd-level": 9})
    assert fake.params["multifd-zstd-level"] == 9


def test_a_capability_qemu_leaves_off_fails(fake_qemu):
    from migflow.errors import StepError

    fake, b = fake_qemu("7.2.22", {"multifd": False, "xbzrle": False}, QEMU_72_PARAMS, applies=lambda name: name != "multifd")
    with pytest.raises(StepError) as err:
        b._apply(fake, {"multifd": True, "xbzrle": True}, {})
    assert (
        err.value.message == "QEMU 7.2.22 on mflab-x accepted multifd = True but reports False (query-migrate-capabilities): the migration would run with False"
    )
    assert err.value.hint is None


def test_names_this_qemu_lacks_fail_with_the_version_that_brings_them(fake_qemu):
    from migflow.errors import StepError

    fake, b = fake_qemu("7.2.22", {"multifd": False, "zero-copy-send": False}, QEMU_72_PARAMS)
    with pytest.raises(StepError) as err:
        b._apply(
            fake,
            {"dirty-limit": True, "switchover-ack": True, "x-unheard-of": True},
            {"vcpu-dirty-limit": 10, "avail-switchover-bandwidth": 2**30, "zero-page-detection": "multifd"},
        )
    assert err.value.message.split("; ") == [
        "capability dirty-limit needs QEMU >= 8.1, this host (mflab-x) has QEMU 7.2.22",
        "capability switchover-ack needs QEMU >= 8.1, this host (mflab-x) has QEMU 7.2.22",
        "QEMU 7.2.22 on mflab-x has no migration capability x-unheard-of",
        "parameter vcpu-dirty-limit needs QEMU >= 8.1, this host (mflab-x) has QEMU 7.2.22",
        "parameter avail-switchover-bandwidth needs QEMU >= 8.2, this host (mflab-x) has QEMU 7.2.22",
        "parameter zero-page-detection needs QEMU >= 9.0, this host (mflab-x) has QEMU 7.2.22",
    ]
    assert fake.caps == {"multifd": False, "zero-copy-send": False}  # nothing was set


# -- QEMU-only features, migrating for real on the lab ----------------------------------------------------------------


def lab_address(name: str) -> str:
    from migflow_lab import api as hosts

    return hosts.host(name).address


def qemu_version() -> str:
    """The QEMU the lab's hosts run (the same binary on both)."""
    out = subprocess.run(["qemu-system-x86_64", "--version"], check=True, capture_output=True, text=True).stdout
    return out.split("version ", 1)[1].split()[0]


def legs_of(db, *columns):
    """Every leg as a dict (scenario, leg, status, error, the given columns, extra and in_force parsed)."""
    cols = ", ".join(["scenario", "leg", "m.status", "m.error", "m.extra", "m.in_force", "m.stats", *columns])
    out = query_dicts(db, f"SELECT {cols} FROM migrations m JOIN runs r USING (run_id) ORDER BY r.plan_index, leg")
    for d in out:
        for k in ("extra", "in_force", "stats"):
            d[k] = json.loads(d[k]) if d[k] else {}
    return out


MULTIFD_FEATURES = """
[[steps]]
use = "set-capabilities"
parameters = "${params}"

[[steps]]
use = "migrate"
mode = "qmp-multifd"
flags = "${flags}"
timeout = { seconds = 60, action = "abort" }
"""


@pytest.fixture(scope="module")
def multifd_features(lab, tmp_path_factory):
    """Zero-copy, then zstd compression: a round trip each, the guest steady first."""
    d = tmp_path_factory.mktemp("multifd")
    matrix = """[matrix]
include = [
  { feature = "zerocopy", flags = ["zerocopy"], params = { multifd-channels = 2 } },
  { feature = "zstd", flags = [], params = { multifd-compression = "zstd", multifd-zstd-level = 1 } },
]"""
    wf = workflow(d, "multifd_features", MULTIFD_FEATURES, matrix=matrix)
    return d / "r.duckdb", migflow("run", str(wf), "--results", str(d / "r.duckdb"))


@pytest.mark.lab
def test_zerocopy_migrates_both_ways_with_zero_copy_send_in_force(multifd_features):
    db, proc = multifd_features
    assert proc.returncode == 0, proc.stdout + proc.stderr
    legs = [x for x in legs_of(db, "memory_verified") if x["scenario"].startswith("feature=zerocopy")]
    assert [x["leg"] for x in legs] == [1, 2]
    for x in legs:
        assert x["status"] == "completed" and x["memory_verified"] is True, x
        assert {"multifd", "zero-copy-send"} <= set(x["in_force"]["capabilities"]), x["in_force"]
        memlock = x["extra"]["memlock"]
        assert memlock["needed"] == 256 * 2**20
        # the kernel lets QEMU pin what it sends: it does not count (CAP_IPC_LOCK), or the limit covers the guest's RAM
        assert memlock["cap_ipc_lock"] or memlock["after"][0] >= memlock["needed"], memlock
        # QEMU's own count of syncs where the kernel copied anyway (<= syncs x channels... x flushes): reported, a number
        assert isinstance(x["stats"]["ram"]["dirty-sync-missed-zero-copy"], int)


@pytest.mark.lab
def test_multifd_zstd_migrates_both_ways_with_what_qemu_reports(multifd_features):
    db, proc = multifd_features
    assert proc.returncode == 0, proc.stdout + proc.stderr
    legs = [x for x in legs_of(db, "memory_verified", "ram_transferred", "ram_normal_bytes") if x["scenario"].startswith("feature=zstd")]
    assert [x["leg"] for x in legs] == [1, 2]
    for x in legs:
        assert x["status"] == "completed" and x["memory_verified"] is True, x
        assert "multifd" in x["in_force"]["capabilities"] and "zero-copy-send" not in x["in_force"]["capabilities"]
        assert x["in_force"]["parameters"]["multifd-compression"] == "zstd" and x["in_force"]["parameters"]["multifd-zstd-level"] == 1
        assert "memlock" not in x["extra"]


@pytest.fixture(scope="module")
def refused_settings(lab, tmp_path_factory):
    """Settings this QEMU accepts and ignores, or lacks: each run fails in set-capabilities."""
    d = tmp_path_factory.mktemp("refused")
    matrix = """[matrix]
include = [
  { what = "zlib-level", caps = { multifd = true }, params = { multifd-compression = "zlib", multifd-zlib-level = 7 } },
  { what = "newer", caps = { dirty-limit = true, switchover-ack = true }, params = { vcpu-dirty-limit = 10, avail-switchover-bandwidth = 1073741824, zero-page-detection = "none" } },
]"""
    steps = '\n[[steps]]\nuse = "set-capabilities"\ncapabilities = "${caps}"\nparameters = "${params}"\n\n[[steps]]\nuse = "migrate"\nmode = "qmp-multifd"\n'
    wf = workflow(d, "refused", steps, matrix=matrix, prepare="wait_steady = false")
    return d / "r.duckdb", migflow("run", str(wf), "--results", str(d / "r.duckdb"))


def _failed_step(db, scenario_prefix):
    [(status, error, step, step_error)] = query(
        db,
        """SELECT r.status, r.error, s.step, s.error FROM runs r JOIN steps s USING (run_id)
           WHERE r.scenario LIKE ? AND s.status = 'failed'""",
        scenario_prefix + "%",
    )
    assert status == "failed" and step == "set-capabilities", (status, step, error)
    [(n,)] = query(db, "SELECT count(*) FROM migrations m JOIN runs r USING (run_id) WHERE r.scenario LIKE ?", scenario_prefix + "%")
    assert n == 0  # no leg was recorded as if the setting had been in force
    return step_error


@pytest.mark.lab
def test_a_zlib_level_qemu_ignores_fails_the_step_naming_it(refused_settings):
    db, proc = refused_settings
    assert proc.returncode == 1, proc.stdout + proc.stderr
    version = qemu_version()
    # The lab's QEMU (Debian 12's 7.2) predates the fix (QEMU 9.0) this test is about.
    assert tuple(map(int, version.split(".")[:2])) < (9, 0), f"QEMU {version} applies multifd levels: this test needs one that does not"
    error = _failed_step(db, "what=zlib-level")
    first = error.splitlines()[0]
    assert first == f"QEMU {version} on mflab-a accepted multifd-zlib-level = 7 but reports 1 (query-migrate-parameters): the migration would run with 1", error
    assert "hint: QEMU before 9.0 does not apply multifd-zlib-level and multifd-zstd-level" in error


@pytest.mark.lab
def test_features_of_a_newer_qemu_fail_naming_the_version_that_brings_them(refused_settings):
    db, proc = refused_settings
    assert proc.returncode == 1, proc.stdout + proc.stderr
    version = qemu_version()
    error = _failed_step(db, "what=newer")
    assert error.split("; ") == [
        f"capability dirty-limit needs QEMU >= 8.1, this host (mflab-a) has QEMU {version}",
        f"capability switchover-ack needs QEMU >= 8.1, this host (mflab-a) has QEMU {version}",
        f"parameter vcpu-dirty-limit needs QEMU >= 8.1, this host (mflab-a) has QEMU {version}",
        f"parameter avail-switchover-bandwidth needs QEMU >= 8.2, this host (mflab-a) has QEMU {version}",
        f"parameter zero-page-detection needs QEMU >= 9.0, this host (mflab-a) has QEMU {version}",
    ]


@pytest.mark.lab
def test_zerocopy_without_locked_memory_is_refused_before_migrating(lab, tmp_path):
    """Without CAP_IPC_LOCK the kernel counts the pages MSG_ZEROCOPY pins against RLIMIT_MEMLOCK
    (8 MiB here): QEMU 7.2 would fail mid-migration ("Process can't lock enough memory for using
    MSG_ZEROCOPY").  The backend raises the limit to the guest's RAM like libvirt, and when it
    cannot (no CAP_SYS_RESOURCE, hard limit below that) says so before migrating."""
    wf = workflow(tmp_path, "zc_nolock", '\n[[steps]]\nuse = "migrate"\nmode = "qmp-multifd"\nflags = ["zerocopy"]\n', prepare="wait_steady = false")
    db = tmp_path / "r.duckdb"
    proc = subprocess.run(
        # migflow and the QEMUs it starts without both capabilities, under an 8 MiB hard limit
        ["prlimit", "--memlock=8388608:8388608", "setpriv", "--bounding-set=-ipc_lock,-sys_resource", "--inh-caps=-ipc_lock,-sys_resource", "--"]
        + migflow_args("run", wf, "--results", db),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [(status, error, extra)] = query(db, "SELECT status, error, extra FROM migrations")
    assert status == "failed", error
    assert error.startswith(
        "zerocopy: QEMU on mflab-a must be allowed to lock the guest's RAM (256 MiB; its RLIMIT_MEMLOCK is 8192 KiB, hard limit 8192 KiB), and raising it failed"
    ), error
    assert "migrate_uri" not in json.loads(extra or "{}")  # refused before QEMU's migrate was sent


POSTCOPY = """
[[steps]]
use = "set-capabilities"
parameters = { max-bandwidth = 16777216, downtime-limit = 10 }

[[steps]]
use = "migrate"
mode = "qmp-tcp"
flags = ["postcopy"]
postcopy_switch = "${switch}"
timeout = { seconds = 60, action = "abort" }
"""


@pytest.fixture(scope="module")
def postcopy_runs(lab, tmp_path_factory):
    """A guest rewriting its 16 MiB working set at 64 MiB/s over a 16 MiB/s cap never converges in
    pre-copy (a pass takes a second, and finds it all dirty again even if the guest gets a quarter
    of its rate): switched after 1 pass, or once the RAM still to send stops shrinking; a round trip each."""
    d = tmp_path_factory.mktemp("postcopy")
    matrix = "[matrix]\nswitch = [{ after_iterations = 1 }, { when_stalled = 1 }]"
    wf = workflow(d, "qemu_postcopy", POSTCOPY, matrix=matrix, ws=16, rate=64)
    return d / "r.duckdb", migflow("run", str(wf), "--results", str(d / "r.duckdb"))


@pytest.mark.lab
@pytest.mark.parametrize(
    "scenario, reason",
    [('switch={"after_iterations":1}', "after 1 iteration"), ('switch={"when_stalled":1}', "RAM still to send did not shrink for 1 iteration")],
)
def test_postcopy_switch_records_when_and_why(postcopy_runs, scenario, reason):
    db, proc = postcopy_runs
    assert proc.returncode == 0, proc.stdout + proc.stderr
    legs = [x for x in legs_of(db, "run_id", "memory_verified", "postcopy_started_ms", "postcopy_ms", "wall_ms") if x["scenario"] == scenario]
    assert [x["leg"] for x in legs] == [1, 2]
    for x in legs:
        assert x["status"] == "completed" and x["memory_verified"] is True, x
        assert "postcopy-ram" in x["in_force"]["capabilities"]
        switch = x["extra"]["postcopy_switch"]
        assert switch["reason"] == reason and "error" not in switch, switch
        # QEMU entered post-copy after migflow asked, and the leg ended after that
        assert 0 < switch["requested_ms"] <= x["postcopy_started_ms"] < x["wall_ms"], (switch, x["postcopy_started_ms"])
        assert x["postcopy_ms"] > 0
        samples = query(
            db,
            "SELECT kind, iteration, remaining FROM samples WHERE run_id = ? AND leg = ? AND kind IN ('iteration', 'postcopy') ORDER BY ms",
            x["run_id"],
            x["leg"],
        )
        kinds = [k for k, _, _ in samples]
        assert kinds.count("postcopy") == 1
        passes = [i for k, i, _ in samples if k == "iteration"]
        n = switch["iteration"]
        assert kinds.index("postcopy") == passes.index(n) + 1  # right after the sample of the pass that fired it
        if reason.startswith("after"):
            assert n == 2
        else:  # the first pass at which the RAM still to send (as QEMU reported it when a pass began) did not shrink
            remaining = [r for k, i, r in samples if k == "iteration" and r is not None and i <= n]  # pass 1 may still be in setup: no RAM figures
            assert remaining[-1] >= remaining[-2], remaining
            assert all(b < a for a, b in itertools.pairwise(remaining[:-1])), remaining


@pytest.fixture(scope="module")
def tls_run(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    wf = workflow(d, "qemu_tls", '\n[[steps]]\nuse = "migrate"\nmode = "qmp-multifd"\nflags = ["tls"]\ntimeout = { seconds = 60, action = "abort" }\n')
    return d / "r.duckdb", migflow("run", str(wf), "--results", str(d / "r.duckdb"))


@pytest.mark.lab
def test_tls_both_ways_with_qemus_own_view_of_both_sides(tls_run):
    from migflow_lab.api import LAB_ROOT

    db, proc = tls_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    legs = legs_of(db, "memory_verified")
    a, b = lab_address("mflab-a"), lab_address("mflab-b")
    assert [(x["leg"], x["status"], x["memory_verified"]) for x in legs] == [(1, "completed", True), (2, "completed", True)], legs
    for x, (src, dst, dst_addr) in zip(legs, [("mflab-a", "mflab-b", b), ("mflab-b", "mflab-a", a)], strict=True):
        # the source's parameters while the leg ran: the client credentials, checked against the destination's address
        params = x["in_force"]["parameters"]
        assert (params["tls-creds"], params["tls-hostname"]) == ("migflow-tls-client", dst_addr), params
        assert "multifd" in x["in_force"]["capabilities"]
        # the destination QEMU's own view: server credentials (it accepts nothing but TLS then)
        tls = x["extra"]["tls"]
        assert (tls["destination"]["tls-creds"], tls["source"]["tls-creds"]) == ("migflow-tls-server", "migflow-tls-client"), tls
        assert (tls["source"]["dir"], tls["destination"]["dir"]) == (str(LAB_ROOT / src / "migrate-tls"), str(LAB_ROOT / dst / "migrate-tls"))


@pytest.mark.lab
def test_tls_on_local_hosts_is_refused_clearly(tmp_path):
    """qemu+local:// hosts have no certificate folder: the leg fails saying so, the guest stays on its source."""
    wf = workflow(tmp_path, "tls_local", '\n[[steps]]\nuse = "migrate"\nflags = ["tls"]\n', prepare="wait_steady = false")
    db = tmp_path / "r.duckdb"
    proc = migflow("run", str(wf), "--src", "qemu+local://127.0.0.1", "--dst", "qemu+local://127.0.0.2", "--results", str(db))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [(status, error)] = query(db, "SELECT status, error FROM migrations")
    assert status == "failed" and error.startswith(
        "the tls flag needs QEMU x509 credentials on 127.0.0.1, and qemu+local://127.0.0.1 names no folder of them"
    ), error
    [(result,)] = query(db, "SELECT result FROM steps WHERE step = 'restore'")
    assert json.loads(result)["found"] == {"source": "running"}
