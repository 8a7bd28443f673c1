"""Mutation testing of migflow with cosmic-ray: every group, then the score per module.

Each ``mutation/<group>.toml`` is a cosmic-ray configuration (the modules, the
fast non-lab tests that must kill their mutants) plus migflow's own filter
section ``[cosmic-ray.filters.migflow]``:

* ``only-in``: mutate only inside these functions (cosmic-ray's
  ``definition_name``, the innermost ``def``), e.g. the engine's ``run_one``;
* ``exclude-operators``: regular expressions of operator names not to apply.

Mutations inside type annotations are always skipped: every module has
``from __future__ import annotations``, so an annotation is never evaluated and
such a mutant cannot be told apart from the original.

The session files (``mutation/<group>.sqlite``) are not committed.  Usage::

    scripts/mutation                    # every group, then the scores
    scripts/mutation stats restore      # some groups
    scripts/mutation --report           # scores of the last run, no new run
    scripts/mutation --survivors stats  # ... and the surviving mutants, with their diffs
    scripts/mutation --rerun-survivors  # go on with the last session: its survivors again, and what was not run

``--rerun-survivors`` is for the work on tests: a mutant the tests killed stays
killed when tests are only added, but not when the code under test changed.
It applies the configuration's filter again (a newly excluded operator's
results are dropped) and runs every mutant without a result, so it also
finishes an interrupted session.

The whole run is niced (19) and runs one mutant at a time (cosmic-ray's local
distributor): other work on the machine keeps its timing.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "mutation"


def _config(group: str) -> dict:
    from cosmic_ray.config import load_config

    return load_config(str(HERE / f"{group}.toml"))


def _shape(path: Path) -> tuple[list, list]:
    """(annotations, binary operators) of a module, as (start, end) positions (1-based lines, 0-based columns).

    cosmic-ray's parser also offers ``*`` and ``**`` of ``f(*args)``, ``{**a}`` and a
    keyword-only marker as binary operators; only the gaps between the operands of a
    real binary operation are kept.
    """
    annotations, operators = [], []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            found += [arg.annotation for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if arg is not None and arg.annotation]
            found += [node.returns] if node.returns is not None else []
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        elif isinstance(node, ast.BinOp):
            operators.append(((node.left.end_lineno, node.left.end_col_offset), (node.right.lineno, node.right.col_offset)))
        annotations += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in found]
    return annotations, operators


def _why_skipped(mutation, cfg: dict, shapes: dict) -> str | None:
    """Why a mutation is not run (migflow's filter), or None to run it."""
    own = cfg.sub("filters", "migflow")
    path = ROOT / mutation.module_path
    if path not in shapes:
        shapes[path] = _shape(path)
    annotations, operators = shapes[path]
    start = tuple(mutation.start_pos)
    if any(a <= start < b for a, b in annotations):
        return "in an annotation (never evaluated)"
    if mutation.operator_name.startswith("core/ReplaceBinaryOperator_") and not any(a <= start < b for a, b in operators):
        return "not a binary operation (argument unpacking, keyword-only marker)"
    only = own.get("only-in")
    if only and mutation.definition_name not in only:
        return f"outside {', '.join(only)}"
    for pattern in own.get("exclude-operators", ()):
        if re.search(pattern, mutation.operator_name):
            return f"operator excluded ({pattern})"
    return None


def _filter(group: str, session: Path) -> None:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    cfg, shapes = _config(group), {}
    by_reason: dict[str, list[str]] = {}
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.work_items:  # a result of an operator excluded since is replaced too
            why = _why_skipped(item.mutations[0], cfg, shapes)
            if why is not None:
                by_reason.setdefault(why, []).append(item.job_id)
        for why, ids in by_reason.items():
            db.set_multiple_results(ids, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=f"migflow filter: {why}"))


def _cosmic_ray(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *args], check=True, cwd=ROOT)


def run_group(group: str, survivors_only: bool = False) -> None:
    config, session = HERE / f"{group}.toml", HERE / f"{group}.sqlite"
    print(f"== {group}: baseline (the tests must pass unmutated)", flush=True)
    _cosmic_ray("baseline", str(config))
    if survivors_only:
        if not session.exists():
            raise SystemExit(f"{session.relative_to(ROOT)} does not exist: run scripts/mutation {group} first")
        with sqlite3.connect(session) as db:  # cosmic-ray's session schema: a result per job
            n = db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'").rowcount
        print(f"== {group}: {n} survivors again", flush=True)
    else:
        _cosmic_ray("init", "--force", str(config), str(session))
    _filter(group, session)
    print(f"== {group}: mutants", flush=True)
    _cosmic_ray("exec", str(config), str(session))


def scores(group: str, survivors: bool) -> list[tuple[str, int, int]]:
    """(module, killed, total) per module of a finished session; prints the survivors when asked."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    session = HERE / f"{group}.sqlite"
    if not session.exists():
        raise SystemExit(f"{session.relative_to(ROOT)} does not exist: run scripts/mutation {group} first")
    killed, total, pending, lived = Counter(), Counter(), Counter(), []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            m = item.mutations[0]
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            total[str(m.module_path)] += 1
            if result.test_outcome == TestOutcome.SURVIVED:
                lived.append((item, result))
            else:  # killed, timed out, or incompetent (the mutant does not even import)
                killed[str(m.module_path)] += 1
        for item in db.pending_work_items:
            pending[str(item.mutations[0].module_path)] += 1
    if survivors:
        for item, result in sorted(lived, key=lambda r: (str(r[0].mutations[0].module_path), tuple(r[0].mutations[0].start_pos))):
            m = item.mutations[0]
            changed = [ln for ln in (result.diff or "").splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
            print(f"SURVIVED {m.module_path}:{m.start_pos[0]} in {m.definition_name}: {m.operator_name}")
            for ln in changed:
                print(f"    {ln.strip()}")
    out = []
    for module in sorted(set(total) | set(pending)):
        out.append((module, killed[module], total[module] + pending[module]))
        if pending[module]:
            print(f"warning: {pending[module]} mutants of {module} were not run (an interrupted session?)")
    return out


def main(argv: list[str] | None = None) -> int:
    groups = sorted(p.stem for p in HERE.glob("*.toml"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run (default: all of {', '.join(groups)})")
    parser.add_argument("--report", action="store_true", help="print the scores of the last run only")
    parser.add_argument("--survivors", action="store_true", help="also list the surviving mutants")
    parser.add_argument("--rerun-survivors", action="store_true", help="go on with the last session: its survivors again, and what was not run")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.groups) - set(groups))
    if unknown:
        parser.error(f"no such group: {', '.join(unknown)} (groups: {', '.join(groups)})")
    chosen = args.groups or groups
    # the checkout's code, never an installed copy, is what the tests import and cosmic-ray mutates
    os.environ["PYTHONPATH"] = os.pathsep.join(str(ROOT / d) for d in ("src", "plugins", "tests"))
    os.nice(19)
    if not args.report:
        for group in chosen:
            modules = [ROOT / p for p in _config(group)["module-path"]]
            before = {p: p.read_bytes() for p in modules}
            try:
                run_group(group, args.rerun_survivors)
            finally:  # an interrupted run must not leave a mutant in the source
                for p, text in before.items():
                    if p.read_bytes() != text:
                        p.write_bytes(text)
                        print(f"restored {p.relative_to(ROOT)}", file=sys.stderr)
    rows = [(g, *row) for g in chosen for row in scores(g, args.survivors)]
    width = max(len(m) for _, m, _, _ in rows)
    print(f"\n{'group':<8} {'module':<{width}} {'killed':>7} {'total':>6} {'score':>6}")
    for group, module, k, t in rows:
        print(f"{group:<8} {module:<{width}} {k:>7} {t:>6} {k / t:>6.0%}")
    k, t = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"{'all':<8} {'':<{width}} {k:>7} {t:>6} {k / t:>6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
