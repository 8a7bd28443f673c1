"""Shared fixtures.  ``lab``: the embedded two-host lab, brought up once per session.

The lab is NOT taken down at the end of the session: several test modules use
it, and CI brings it up first and down last.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cli_runner import migflow

ROOT = Path(__file__).resolve().parent.parent


def _lab_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (run the tests as root, or sudo)"
    if not (shutil.which("libvirtd") or os.path.exists("/usr/sbin/libvirtd")):
        return "libvirtd is not installed (run scripts/install-prereqs.sh as root)"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "the Python module libvirt is missing (pip install libvirt-python)"
    return None


@pytest.fixture(scope="session")
def lab():
    """Bring the lab up if it is not (skipping when this machine cannot), yield its status()."""
    reason = _lab_skip_reason()
    if reason:
        if os.environ.get("CI"):  # CI must run the lab tests, never skip them
            pytest.fail(f"the lab is required in CI: {reason}")
        pytest.skip(reason)
    from migflow_lab import api as hosts

    from migflow.errors import PrerequisiteError

    if not hosts.is_up():
        try:
            hosts.up(echo=lambda _m: None)
        except PrerequisiteError as exc:
            if os.environ.get("CI"):
                pytest.fail(f"the lab is required in CI and cannot start: {exc}")
            pytest.skip(f"the lab cannot start here: {exc}")
    yield hosts.status()


@pytest.fixture(scope="session")
def shipped_run(lab, tmp_path_factory):
    """Run a shipped workflow through the real command line, at most once per session.

    ``shipped_run("zstack_default")`` -> (results file, completed process): the
    workflow tests and the documentation's examples share these results.
    """
    cache: dict = {}

    def run(name: str):
        if name not in cache:
            db = tmp_path_factory.mktemp(name) / "results.duckdb"
            proc = migflow("run", ROOT / "workflows" / f"{name}.toml", "--results", db, timeout=1800)
            cache[name] = (db, proc)
        return cache[name]

    return run
