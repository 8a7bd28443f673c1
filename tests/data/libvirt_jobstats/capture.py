#!/usr/bin/env python3
"""Capture libvirt job-statistics dictionaries from real migrations on the lab.

Runs small workflows in-process with an extra plugin that keeps, for leg 1,
the completed job's dictionary (libvirt's JOB_COMPLETED event, what the
backend translates) and one running job's dictionary (``virDomain.jobStats()``
while the migration is active), and writes them as ``lab_<case>_<kind>.json``
here.  Needs root and the lab (``migflow lab up``)::

    python3 tests/data/libvirt_jobstats/capture.py
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import libvirt

from migflow.engine import Engine
from migflow.hookspecs import hookimpl
from migflow.plugins import get_plugins
from migflow.workflow.loader import load_workflow

HERE = Path(__file__).resolve().parent

CASES = {
    "p2p": ("flags = []", "", "[domain.create.workload]\nworking_set_mib = 32\ndirty_rate_mibs = 16"),
    "xbzrle_autoconverge": (
        'flags = ["compressed", "auto-converge"]',
        '[[steps]]\nuse = "set-capabilities"\ncapabilities = { xbzrle = true, auto-converge = true }\nparameters = { xbzrle-cache-size = 16777216 }',
        '[domain.create.workload]\nworking_set_mib = 32\ndirty_rate_mibs = 16\npattern = "random"',
    ),
    "storage": (
        'flags = ["copy-storage-all"]',
        "",
        '[domain.create]\nguest = "linux"\n[domain.create.workload]\nworking_set_mib = 16\ndirty_rate_mibs = 8\ndisk_mib = 32\ndisk_write_kibs = 128',
    ),
}


class Capture:
    def __init__(self) -> None:
        self.running: dict | None = None
        self.completed: dict | None = None

    @hookimpl
    def migflow_leg_progress(self, ctx, leg, sample):
        dom = leg.backend_state.get("dom")
        if leg.number == 1 and self.running is None and dom is not None:
            try:
                stats = dom.jobStats()
            except libvirt.libvirtError:
                return
            if stats.get("memory_processed"):
                self.running = stats

    @hookimpl
    def migflow_leg_finished(self, ctx, leg):
        if leg.number == 1:
            self.completed = leg.backend_state.get("completed_stats")


def workflow(case: str) -> str:
    flags, before, domain = CASES[case]
    if not domain.startswith("[domain.create]"):
        domain = "[domain.create]\nmemory_mib = 256\n" + domain
    return f"""name = "capture-{case.replace("_", "-")}"
repetitions = 1
{domain}
[[steps]]
use = "prepare-domain"
{before}
[[steps]]
use = "migrate"
mode = "p2p"
{flags}
[[steps]]
use = "collect-qmp"
interval_ms = 100
[[steps]]
use = "restore"
"""


def main() -> int:
    versions = f"libvirt {libvirt.getVersion() // 1000000}.{libvirt.getVersion() // 1000 % 1000}, {platform.node()}"
    for case in sys.argv[1:] or CASES:
        cap = Capture()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "w.toml"
            path.write_text(workflow(case))
            plugins = get_plugins(extra=(cap,))
            wf = load_workflow(path, plugins)
            [summary] = Engine(plugins, wf, plugins.hook.migflow_default_hosts(), str(Path(tmp) / "r.duckdb"), echo=lambda _m: None).run()
        print(f"{case}: run {summary.status}", file=sys.stderr)
        for kind, job, completed in (("completed", cap.completed, True), ("running", cap.running, False)):
            if job is None:
                print(f"  no {kind} statistics caught", file=sys.stderr)
                continue
            out = HERE / f"lab_{case}_{kind}.json"
            source = f"captured on the migflow lab ({versions}) by capture.py: p2p leg 1 of case {case!r}, {kind} job"
            out.write_text(json.dumps({"source": source, "completed": completed, "job": job}, indent=2, sort_keys=True) + "\n")
            print(f"  wrote {out.name} ({len(job)} keys)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
