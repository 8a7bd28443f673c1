"""Failure injection on the lab: each way a migration fails, the end state of
the VM, the recorded status and error, and that the next run succeeds.

The faults are injected into a real ``migflow run`` (a subprocess) by the
plugin tests/faults.py, from the leg observer hook, while a real guest
migrates between the lab's two libvirtd daemons.  The migration bandwidth is
capped (``max-bandwidth``) so each leg lasts a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_runner import migflow, query
from users_domains import define_users_domain, remove_users_domain

pytestmark = pytest.mark.lab

TESTS = Path(__file__).resolve().parent
MiB = 2**20

# working set 32 MiB dirtied at 2 MiB/s, 8 s to touch it all, migrated at 4 MiB/s: converges in ~6 s
SLOW = {"ws": 32, "rate": 2, "warmup": 8, "bandwidth": 4 * MiB}
# dirtied faster than the capped link carries: never converges
HOT = {"ws": 32, "rate": 16, "warmup": 3, "bandwidth": 4 * MiB}


def workflow(tmp_path, mode="p2p", guest=SLOW, timeout=None, flags=(), expect="success", round_trip=False, name="fault", existing=None, migrate_extra=""):
    """A one-leg workflow; ``existing``: migrate that (a user's) domain instead of creating a guest."""
    timeout_line = ""
    if timeout:  # (seconds, action); action None: the step's default
        timeout_line = f"timeout = {{ seconds = {timeout[0]}" + (f', action = "{timeout[1]}"' if timeout[1] else "") + " }\n"
    flags_line = f"flags = {json.dumps(list(flags))}\n" if flags else ""
    domain = (
        f'[domain]\nname = "{existing}"'
        if existing
        else f"[domain.create]\nmemory_mib = 128\n[domain.create.workload]\nworking_set_mib = {guest['ws']}\ndirty_rate_mibs = {guest['rate']}"
    )
    text = f"""
name = "{name}"
round_trip = {str(round_trip).lower()}
{domain}
[[steps]]
use = "prepare-domain"
wait_steady = false  # a fault needs a long migration, not a steady guest: a fixed warm-up instead
warmup_s = {guest["warmup"]}
[[steps]]
use = "set-capabilities"
parameters = {{ max-bandwidth = {guest["bandwidth"]} }}
[[steps]]
use = "migrate"
mode = "{mode}"
expect = "{expect}"
{timeout_line}{flags_line}{migrate_extra}
[[steps]]
use = "collect-qmp"
[[steps]]
use = "restore"
"""
    path = tmp_path / f"{name}-{mode}.toml"
    path.write_text(text)
    return path


def run(tmp_path, wf, fault=None, db=None, timeout=300):
    db = db or tmp_path / "results.duckdb"
    env = dict(
        os.environ,
        PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        MIGFLOW_PLUGIN_MODULES="faults",
        MIGFLOW_FAULT=fault or "",
        MIGFLOW_FAULT_MARK=str(tmp_path / "fault.mark"),
    )
    proc = migflow("run", wf, "--results", db, env=env, timeout=timeout)
    return db, proc


def fired(tmp_path):
    mark = tmp_path / "fault.mark"
    return mark.exists() and mark.read_text().strip() != ""


def assert_on_source(found: dict, state: str) -> None:
    """The VM is on its source; an aborted incoming domain may still linger (paused) on the
    destination, since libvirt tears it down asynchronously: restore removes it, and the
    ``healthy_after`` fixture checks both hosts end empty."""
    assert found.get("source") == state, found
    assert found.get("destination") in (None, "paused"), found


def restore_found(db):
    [(result,)] = query(db, "SELECT result FROM steps WHERE step = 'restore'")
    return json.loads(result)


@pytest.fixture
def healthy_after(lab, tmp_path):
    """After the case: the lab is healthy again and a plain run on the same hosts succeeds."""
    yield
    from migflow_lab import api as hosts

    subprocess.run(["ip", "link", "set", "mflab-b-br", "up"], check=False)
    if not hosts.is_up():
        hosts.up(echo=lambda _m: None)
    quick = {"ws": 8, "rate": 4, "warmup": 0, "bandwidth": 512 * MiB}
    db, proc = run(tmp_path, workflow(tmp_path, guest=quick, name="after", round_trip=True), db=tmp_path / "after.duckdb")
    assert proc.returncode == 0, "the next run on the same hosts failed:\n" + proc.stdout + proc.stderr
    assert query(db, "SELECT status FROM runs") == [("completed",)]
    runs = [r for f in tmp_path.glob("*.duckdb") for (r,) in query(f, "SELECT run_id FROM runs")]
    for h in hosts.status()["hosts"]:  # the lab may be shared meanwhile: only these runs' domains count
        mine = [d for d in h["domains"] if any(r in d["name"] for r in runs)]
        assert mine == [], f"{h['name']} kept a domain: {mine}"


CASES = [
    # fault, mode, expected run status, words in the leg's error, where restore found the domain, the source QEMU's last status
    # an abort: libvirt's "canceled by client"; on a loaded machine also the destination's failure to load the cut
    # stream (once in CI; migflow adds the source QEMU's "cancelled"), or the source QEMU's stream broken by the
    # destination before QEMU saw the cancel (1 of 15 runs with three busy loops: QEMU's last word "failed"), or
    # both: the destination's failure to load, QEMU's "failed" 3 ms after an abort 5 ms into the migration (once in
    # a CI rehearsal; no cancelled event)
    (
        "abort",
        "p2p",
        "failed",
        (
            "canceled by client",
            "(the source QEMU's migration was cancelled: ",
            "operation failed: job 'migration out' failed: ",
            "load of migration failed",
        ),
        {"source": "running"},
        ("cancelled", "failed"),
    ),
    # the source libvirtd loses its connection to the destination's, then cancels the source QEMU's migration
    ("kill-dst-libvirtd", "p2p", "failed", "client socket is closed", {"source": "running"}, ("cancelled", "failed")),
    # the source QEMU's stream breaks ("Unable to write to socket: Bad file descriptor" or "Broken pipe"),
    # or libvirt notices the destination QEMU's monitor closing first (and cancels)
    (
        "kill-dst-qemu",
        "p2p",
        "failed",
        ("operation failed: job 'migration out' failed: ", "qemu unexpectedly closed the monitor"),
        {"source": "running"},
        ("failed", "cancelled"),
    ),
    (
        "kill-dst-qemu",
        "managed-direct",
        "failed",
        ("operation failed: job 'migration out' failed: ", "qemu unexpectedly closed the monitor"),
        {"source": "running"},
        ("failed", "cancelled"),
    ),
]


@pytest.fixture
def users_domain(lab):
    """A persistent domain of the user's on host a (the lab's guest kernel, SLOW's workload): (name, uuid)."""
    import libvirt
    from migflow_lab.guest import guest_image

    image = guest_image({"working_set_mib": SLOW["ws"], "dirty_rate_mibs": SLOW["rate"]})
    name = f"users-own-{os.getpid()}"
    src, dst = (libvirt.open(h["uri"]) for h in lab["hosts"])
    dom = define_users_domain(src, name, image.kernel, image.cmdline, lab["accel"])
    yield name, dom.UUIDString()
    remove_users_domain((src, dst), name)


@pytest.mark.parametrize("fault", ["abort", "kill-dst-qemu", "kill-dst-libvirtd"])
def test_a_users_domain_survives_the_fault_where_it_was(tmp_path, healthy_after, users_domain, fault):
    """A domain migflow did not create is never destroyed or undefined: after the fault it runs on its
    source, still defined, still the same domain; the destination keeps no trace of it."""
    import libvirt

    name, uuid = users_domain
    db, proc = run(tmp_path, workflow(tmp_path, existing=name), fault)
    assert fired(tmp_path) and proc.returncode == 1, proc.stdout + proc.stderr
    assert query(db, "SELECT status FROM migrations") == [("failed",)]
    from migflow_lab import api as lab_api

    lab_api.ensure_up(lambda _m: None)  # a killed destination libvirtd comes back with the lab
    src, dst = (libvirt.open(u) for u in ("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system"))
    deadline = time.monotonic() + 60
    while True:  # libvirt tears an aborted incoming domain down asynchronously
        try:
            dst.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            break
        assert time.monotonic() < deadline, "the destination kept the user's domain"
        time.sleep(0.5)
    dom = src.lookupByUUIDString(uuid)
    assert (dom.name(), dom.state()[0], dom.isPersistent()) == (name, libvirt.VIR_DOMAIN_RUNNING, 1)
    actions = restore_found(db).get("actions", [])
    assert not any(w in a for a in actions for w in ("destroyed", "undefined", "removed")), actions


def test_a_failed_postcopy_leaves_the_users_domain_where_it_is_and_says_how_to_recover(tmp_path, healthy_after, users_domain):
    """The destination QEMU dies after the switch to post-copy: the guest's memory is split, so restore
    resumes, moves and removes nothing (a resumed source would run on half its memory), fails naming the
    state, and tells how to recover (libvirt's post-copy failure state, libvirt 8.5+)."""
    import libvirt

    name, uuid = users_domain
    wf = workflow(tmp_path, existing=name, flags=("postcopy",), migrate_extra="postcopy_switch = { after_iterations = 1 }\n")
    # post-copy itself is unlimited by default: at 1 MiB/s the pages left after the switch take seconds
    wf.write_text(wf.read_text().replace("max-bandwidth = ", "max-postcopy-bandwidth = 1048576, max-bandwidth = "))
    db, proc = run(tmp_path, wf, "kill-dst-qemu-in-postcopy")
    assert fired(tmp_path) and proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [(leg_status, switched)] = query(db, "SELECT status, postcopy_started_ms IS NOT NULL FROM migrations")
    assert (leg_status, switched) == ("failed", True)
    [(status, error)] = query(db, "SELECT status, error FROM steps WHERE step = 'restore'")
    assert status == "failed" and f"post-copy of domain '{name}' ({uuid}) failed after the switch (source: paused" in error, error
    assert "so migflow moved, resumed and removed nothing" in error and "--postcopy-resume" in error, error
    src = libvirt.open("qemu+tcp://198.18.0.1/system")
    try:
        state, reason = src.lookupByUUIDString(uuid).state()
    finally:
        src.close()
    assert (state, reason) == (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)  # left as libvirt had it


@pytest.mark.parametrize("fault,mode,status,words,found,qemu_said", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_fault_leaves_the_source_running(tmp_path, healthy_after, fault, mode, status, words, found, qemu_said):
    db, proc = run(tmp_path, workflow(tmp_path, mode=mode), fault)
    assert fired(tmp_path), proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [(run_status, run_error)] = query(db, "SELECT status, error FROM runs")
    assert run_status == status, (run_status, run_error)
    assert run_error.startswith("step 'migrate' failed")
    [(leg_status, leg_error, last_status)] = query(db, "SELECT status, error, extra->>'qemu_last_status' FROM migrations")
    assert leg_status == "failed" and any(w in leg_error for w in ((words,) if isinstance(words, str) else words)), leg_error
    assert last_status in qemu_said, (last_status, leg_error)
    # QEMU said it was cancelled: the error says so, in libvirt's words or migflow's
    assert last_status != "cancelled" or "cancel" in leg_error.lower(), leg_error
    assert_on_source(restore_found(db)["found"], found["source"])


def test_source_qemu_killed_means_the_vm_is_lost(tmp_path, healthy_after):
    db, proc = run(tmp_path, workflow(tmp_path), "kill-src-qemu")
    assert fired(tmp_path) and proc.returncode == 1, proc.stdout + proc.stderr
    [(run_status, run_error)] = query(db, "SELECT status, error FROM runs")
    assert run_status == "lost", (run_status, run_error)  # never success
    assert "found on neither host" in run_error
    assert query(db, "SELECT status FROM migrations") == [("failed",)]


def test_link_cut_fails_after_keepalive_and_the_source_keeps_running(tmp_path, healthy_after):
    db, proc = run(tmp_path, workflow(tmp_path), "cut-link", timeout=400)
    assert fired(tmp_path) and proc.returncode == 1, proc.stdout + proc.stderr
    [(leg_status, leg_error)] = query(db, "SELECT status, error FROM migrations")
    # the client's keepalive or libvirtd's (about 30 s) closes the connection
    assert leg_status == "failed" and any(w in leg_error for w in ("keepalive", "socket is closed", "connection")), leg_error
    found = restore_found(db)["found"]
    assert found.get("source") == "running", found


@pytest.mark.parametrize("action", ["abort", "suspend", "postcopy", None])
def test_never_converging_migration_with_a_timeout(tmp_path, healthy_after, action):
    flags = ["postcopy"] if action == "postcopy" else []
    db, proc = run(tmp_path, workflow(tmp_path, guest=HOT, timeout=(6, action), expect="any", flags=flags))
    action = action or "suspend"  # no action given: suspend, like virsh migrate --timeout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [(leg_status, leg_error, wall, fired_action)] = query(db, "SELECT status, error, wall_ms, timeout_action FROM migrations")
    assert wall >= 6000
    if action == "abort":
        assert leg_status == "failed" and leg_error.startswith("timed out after 6 s (abort)"), leg_error
        assert fired_action == "abort"
        assert_on_source(restore_found(db)["found"], "running")
    elif action == "postcopy":  # switched to post-copy: the guest runs on the destination, pages follow on demand
        assert leg_status == "completed", leg_error
        assert fired_action == "postcopy"
        [(requests, started, lasted)] = query(db, "SELECT ram_postcopy_requests, postcopy_started_ms, postcopy_ms FROM migrations")
        # QEMU entered post-copy after the timeout and finished it; pages the guest touched before they
        # arrived were fetched on demand (how many depends on timing: none when the rest arrived first)
        assert started >= 6000 and lasted > 0 and requests >= 0, (started, lasted, requests)
        assert restore_found(db)["found"] == {"destination": "running"}
    else:  # paused, the guest stops dirtying: the migration completes; libvirt resumes it on the destination
        assert leg_status == "completed", leg_error
        assert fired_action == "suspend"
        assert restore_found(db)["found"] == {"destination": "running"}


@pytest.mark.parametrize("mode", ["p2p", "managed-direct"])
def test_ctrl_c_aborts_the_leg_restores_and_records_interrupted(tmp_path, healthy_after, mode):
    db, proc = run(tmp_path, workflow(tmp_path, mode=mode), "sigint-self")
    assert fired(tmp_path)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert query(db, "SELECT status, error FROM runs") == [("interrupted", "interrupted by Ctrl-C")]
    steps = query(db, "SELECT step, status, error FROM steps ORDER BY position")
    assert [(step, status) for step, status, _ in steps] == [
        ("prepare-domain", "completed"),
        ("set-capabilities", "completed"),
        ("migrate", "interrupted"),
        ("collect-qmp", "completed"),
        ("restore", "completed"),
    ], steps
    assert query(db, "SELECT status FROM migrations") == [("interrupted",)]
    found = restore_found(db)["found"]
    assert found["source"] in ("running", "paused"), found  # a paused source is resumed by restore
    # the destination's incoming domain is torn down asynchronously after the abort: restore removes it if still there
    assert found.get("destination") in (None, "paused"), found


def wait_until_only_on(where, name, timeout=120):
    import libvirt
    from migflow_lab import api as hosts

    uris = {h.name: h.uri for h in hosts.HOSTS}
    want = {"source": uris["mflab-a"], "destination": uris["mflab-b"]}[where]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {}
        for uri in uris.values():
            conn = libvirt.open(uri)
            try:
                states[uri] = []
                for d in conn.listAllDomains():
                    try:
                        if d.name() == name:
                            states[uri].append(d.state()[0])
                    except libvirt.libvirtError:
                        pass  # gone while we looked: the job is still settling
            finally:
                conn.close()
        if states[want] == [libvirt.VIR_DOMAIN_RUNNING] and all(not v for u, v in states.items() if u != want):
            return
        time.sleep(0.5)
    raise AssertionError(f"the domain did not settle on the {where}: {states}")


@pytest.mark.parametrize("mode,where", [("p2p", "destination"), ("managed-direct", "source")])
def test_migflow_killed_mid_migration_is_reconciled_and_recovered(tmp_path, healthy_after, mode, where):
    """SIGKILL: p2p completes anyway (the source libvirtd drives it); managed-direct fails."""
    db = tmp_path / "results.duckdb"
    _, proc = run(tmp_path, workflow(tmp_path, mode=mode), "kill-self", db=db)
    assert fired(tmp_path) and proc.returncode == -signal.SIGKILL
    spooled = list((tmp_path / "results.duckdb.spool").glob("*.json"))
    assert len(spooled) == 1 and json.loads(spooled[0].read_text())["run"]["status"] == "running"
    run_id = json.loads(spooled[0].read_text())["run"]["run_id"]
    guest = f"migflow-guest-{run_id}"  # the run's own domain
    wait_until_only_on(where, guest)  # the orphaned job ends on its own
    rec = migflow("recover", "--results", db, timeout=120)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    [(status, error, extra)] = query(db, "SELECT status, error, extra FROM runs")
    assert status == "abandoned"
    assert f"ended while the run was in progress; domain {guest} " in error, error
    assert f"running on the {where}" in error, error
    recovered = json.loads(extra)["recovered"]
    assert recovered["error"] is None and any("destroyed" in a for a in recovered["actions"]), recovered
    assert "nothing to recover" in migflow("recover", "--results", db, timeout=60).stdout
