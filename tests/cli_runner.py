"""Run migflow as a user does, in a child process, and read the results file it wrote.

One way for every test file: ``migflow("run", wf, "--results", db)`` is
``python -m migflow run WF --results DB`` under the interpreter running the
tests, with its output captured as text and its exit status left to the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import duckdb

__all__ = ["migflow", "migflow_args", "query", "user_env"]


def migflow_args(*args: str | Path) -> list[str]:
    """The command line of ``python -m migflow ARGS`` under this interpreter."""
    return [sys.executable, "-m", "migflow", *map(str, args)]


def migflow(*args: str | Path, cwd: str | Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``migflow ARGS`` and wait for it; never raises on a failing exit status.

    :param env: the child's whole environment (default: this process's);
        :func:`user_env` gives one without the test session's ``MIGFLOW_*`` settings.
    :param timeout: a guard against a hang, in seconds, not a measurement.
    """
    return subprocess.run(migflow_args(*args), check=False, capture_output=True, text=True, cwd=cwd, env=None if env is None else dict(env), timeout=timeout)


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``MIGFLOW_*`` variable, plus ``extra``:
    what a user's shell gives migflow when they have set nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGFLOW_")}
    env.update(extra)
    return env


def query(db: str | Path, sql: str, *params: object) -> list[tuple]:
    """Rows of ``sql`` on the results file ``db``, opened read-only as a user's SQL client would."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def query_dicts(db: str | Path, sql: str, *params: object) -> list[dict]:
    """Like :func:`query`, each row a dict keyed by the result's column names (``AS`` names them)."""
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
