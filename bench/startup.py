#!/usr/bin/env python3
"""Benchmark 2 (issue 8): start-up time of the ``migflow`` command.

Process wall time (like ``time CMD``) of, interleaved round by round:

* ``python -c pass`` (the interpreter alone, the baseline);
* ``<venv>/bin/migflow --help`` and ``<venv>/bin/migflow validate
  workflows/zstack_default.toml``: the interpreter's own console script
  (not the pyenv shim ``/root/.pyenv/shims/migflow``, a bash script that
  adds about 0.2 s; timed too, for information);
* ``python -m migflow --help`` and ``python -m migflow validate ...``.

Prints medians, quartiles and the ratio of each median to the baseline.
Targets: ``--help`` under 0.25 s, ``validate`` under 0.35 s.

    python3 bench/startup.py              # 30 rounds
    python3 bench/startup.py --rounds 5   # quick

Needs no lab.  If a target is missed: ``python -X importtime -m migflow --help``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_note, quartiles, run_timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(ROOT, "workflows", "zstack_default.toml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "migflow")
    if not os.path.exists(script):
        script = shutil.which("migflow")
    shim = "/root/.pyenv/shims/migflow" if os.path.exists("/root/.pyenv/shims/migflow") else shutil.which("migflow")
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "bin/migflow --help": [script, "--help"],
        "bin/migflow validate": [script, "validate", WORKFLOW],
        "python -m migflow --help": [py, "-m", "migflow", "--help"],
        "python -m migflow validate": [py, "-m", "migflow", "validate", WORKFLOW],
    }
    if shim and os.path.realpath(shim) != os.path.realpath(script):
        cases["shim migflow --help"] = [shim, "--help"]
    targets = {"--help": 0.25, "validate": 0.35}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for argv in cases.values():  # warm the page cache and .pyc files
        run_timed(argv, cwd=ROOT)
    for i in range(args.rounds):
        names = list(cases)
        names = names[i % len(names) :] + names[: i % len(names)]  # rotate the order
        for name in names:
            dt, proc = run_timed(cases[name], cwd=ROOT)
            if proc.returncode != 0:
                print(f"{name} failed (exit {proc.returncode}): {proc.stderr.strip()[:400]}")
                return 1
            times[name].append(dt)
    base = statistics.median(times["python -c pass"])
    print(f"start-up: {args.rounds} interleaved rounds; {py}; console script {script}; {machine_note()}")
    ok = True
    for name, ts in times.items():
        q = quartiles(ts)
        target = next((t for k, t in targets.items() if name.endswith(k) and not name.startswith("shim")), None)
        verdict = ""
        if target is not None:
            verdict = f"  target < {target:.2f} s: {q[1] / target:.2f} of it, {'PASS' if q[1] < target else 'FAIL'}"
            ok = ok and q[1] < target
        print(f"  {name:28s} median {q[1] * 1000:6.1f} ms (quartiles {q[0] * 1000:6.1f}-{q[2] * 1000:6.1f})  x{q[1] / base:5.2f} of python -c pass{verdict}")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
