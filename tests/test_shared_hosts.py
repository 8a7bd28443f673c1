"""Shared hosts (issue 12), on the lab through the real command line: two runs at
once take turns on a host pair and both complete; ``--no-wait`` fails at once with
status 6 naming the holder; a user's own domains survive our runs, failed ones
included; several guests evacuate at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from cli_runner import migflow, migflow_args, query
from users_domains import define_users_domain, remove_users_domain

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent
MAIN_JOB = str(ROOT / "workflows" / "zstack_default.toml")


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its lines as they come
    return subprocess.Popen(migflow_args(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 600) -> list[str]:
    """Lines of ``proc``'s progress display (stderr) up to the first matching ``pattern``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r} in {lines}")


def test_two_runs_at_once_take_turns_and_both_complete(lab, tmp_path):
    first = start("run", MAIN_JOB, "-n", "1", "--results", str(tmp_path / "first.duckdb"))
    try:
        wait_for_line(first, r"^run 1/1 ")  # it holds the hosts now
        second = migflow("run", MAIN_JOB, "-n", "1", "--results", str(tmp_path / "second.duckdb"))
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(60)
    assert first.returncode == 0, out + err
    assert second.returncode == 0, second.stdout + second.stderr
    [(first_run, first_end)] = query(tmp_path / "first.duckdb", "SELECT run_id, ended_at FROM runs")
    [(second_start,)] = query(tmp_path / "second.duckdb", "SELECT started_at FROM runs")
    # the second waited, said for whom (a run id the user finds in `runs`), and started after the first ended
    assert re.search(
        rf"^waiting: qemu\+tcp://198\.18\.0\.1/system is reserved by run {first_run} of workflow 'zstack_default' \(pid \d+", second.stderr, re.M
    ), second.stderr
    assert "the hosts are free: starting" in second.stderr
    assert second_start >= first_end


def test_no_wait_fails_at_once_with_status_6_naming_the_holder(lab, tmp_path):
    first = start("run", MAIN_JOB, "-n", "1", "--results", str(tmp_path / "first.duckdb"))
    try:
        wait_for_line(first, r"^run 1/1 ")
        t0 = time.monotonic()
        busy = migflow("run", MAIN_JOB, "-n", "1", "--no-wait", "--results", str(tmp_path / "busy.duckdb"))
        took = time.monotonic() - t0
        first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(60)
    assert busy.returncode == 6, busy.stdout + busy.stderr
    assert "Traceback" not in busy.stderr and took < 30, took
    [(holder,)] = query(tmp_path / "first.duckdb", "SELECT run_id FROM runs")
    assert f"is reserved by run {holder} of workflow 'zstack_default'" in busy.stderr, busy.stderr
    assert "hint: wait for it (migflow run without --no-wait waits), or use other hosts" in busy.stderr
    assert not (tmp_path / "busy.duckdb").exists()  # nothing ran, nothing recorded


def test_a_users_domains_survive_our_runs_failed_ones_included(lab, tmp_path):
    """A named domain whose migration QEMU refuses stays running where it was, untouched; a
    domain that merely looks like one of migflow's (no owner record) is never taken for a leftover."""
    import libvirt
    from migflow_lab.guest import guest_image

    src, dst = (h["uri"] for h in lab["hosts"])
    image = guest_image({"working_set_mib": 16, "dirty_rate_mibs": 8})
    sconn, dconn = libvirt.open(src), libvirt.open(dst)
    names = ("e2e-users-own", "migflow-guest-20200101-000000-abcdef")
    for name in names:
        remove_users_domain((sconn, dconn), name)
    try:
        mine = define_users_domain(sconn, names[0], image.kernel, image.cmdline, lab["accel"])
        lookalike = define_users_domain(sconn, names[1], image.kernel, image.cmdline, lab["accel"])
        uuids = (mine.UUIDString(), lookalike.UUIDString())
        wf = tmp_path / "refused.toml"
        wf.write_text(
            f'name = "refused"\n[domain]\nname = "{names[0]}"\n'
            '[[steps]]\nuse = "prepare-domain"\n[[steps]]\nuse = "migrate"\nmode = "unmanaged-direct"\n'
            '[[steps]]\nuse = "collect-qmp"\n[[steps]]\nuse = "restore"\n'
        )
        proc = migflow("run", str(wf), "-n", "1", "--results", str(tmp_path / "r.duckdb"))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        [(status, error)] = query(tmp_path / "r.duckdb", "SELECT status, error FROM runs")
        assert status == "failed" and "direct migration is not supported by the source host" in error, error
        # the main job creates and removes its own guest on the same hosts meanwhile
        assert migflow("run", MAIN_JOB, "-n", "1", "--results", str(tmp_path / "main.duckdb")).returncode == 0
        for name, uuid in zip(names, uuids, strict=True):
            dom = sconn.lookupByName(name)
            assert dom.UUIDString() == uuid and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and dom.isPersistent(), name
            with pytest.raises(libvirt.libvirtError):
                dconn.lookupByName(name)
        [(result,)] = query(tmp_path / "r.duckdb", "SELECT result FROM steps WHERE step = 'restore'")
        assert not any(w in json.dumps(result) for w in ("destroyed", "undefined", "removed")), result
    finally:
        for name in names:
            remove_users_domain((sconn, dconn), name)


def test_evacuation_moves_several_guests_at_once(shipped_run):
    db, proc = shipped_run("evacuation")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    batches = query(db, "SELECT run_id, batch, concurrency, legs, completed, evacuation_ms FROM evacuations ORDER BY run_id, batch")
    runs = query(db, "SELECT count(*) FROM runs")[0][0]
    assert len(batches) == 2 * runs == 12, batches  # 3 concurrencies x 2 repetitions, there and back
    assert {c for _r, _b, c, *_ in batches} == {1, 2, 4}
    assert all(legs == completed == 4 for _r, _b, _c, legs, completed, _e in batches), batches
    assert query(db, "SELECT bool_and(memory_verified), count(DISTINCT guest) FROM migrations") == [(True, 4)]
    # independent of the view: per batch, when the legs ran (client clock) against how long each took
    legs = query(
        db,
        """SELECT run_id, batch, any_value(concurrency), sum(wall_ms), epoch_ms(max(ended_at)) - epoch_ms(min(started_at))
           FROM migrations GROUP BY run_id, batch""",
    )
    for run_id, batch, concurrency, summed, span in legs:
        if concurrency == 1:  # one after the other: the batch lasts at least the sum of its legs
            assert span >= summed * 0.98, (run_id, batch, span, summed)
        else:  # overlapping legs: the batch is over sooner than one after the other would be
            assert span < summed, (run_id, batch, concurrency, span, summed)
    spans = {c: [s for _r, _b, cc, _sum, s in legs if cc == c] for c in (1, 4)}
    assert max(spans[4]) < min(spans[1]), spans
