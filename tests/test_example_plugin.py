"""The example third-party plugin (docs/examples/migflow-example), tested as a
third party ships it: built from its own pyproject.toml with pip and found
through its entry point, never imported from the checkout.

It is installed into a throw-away virtual environment created with
``--system-site-packages``: that environment sees migflow and every other
installed package, but installing and uninstalling the plugin there never
changes the environment other tests (and other people's runs) use.  CI also
installs it into the main environment (.ci/run); ``test_installed_by_ci``
checks that when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from cli_runner import migflow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "migflow-example"
WORKFLOW = "workflows/example.toml"


class Venv:
    def __init__(self, path: Path, package: Path):
        self.path, self.package = path, package
        self.python = str(path / "bin" / "python")

    def run(self, *args, timeout=300):
        env = {k: v for k, v in os.environ.items() if k not in ("MIGFLOW_LOAD_PLUGINS", "MIGFLOW_DISABLE_PLUGINS")}
        return subprocess.run([self.python, *args], check=False, capture_output=True, text=True, timeout=timeout, env=env)

    def migflow(self, *args, timeout=300):
        return self.run("-m", "migflow", *args, timeout=timeout)

    def pip(self, *args):
        proc = self.run("-m", "pip", *args, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def install(self):
        # --no-deps: migflow and click come from the system site-packages
        self.pip("install", "--quiet", "--no-deps", str(self.package))

    def uninstall(self):
        self.pip("uninstall", "--yes", "--quiet", "migflow-example")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("example-plugin")
    package = base / "migflow-example"
    # pip builds in the source tree (build/, *.egg-info): build from a copy, keep the checkout clean
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(base / "venv")], check=True)
    # --system-site-packages sees the *base* interpreter's packages; under a virtualenv that is
    # not the migflow under test.  Add this interpreter's site directories (their .pth files
    # included: an editable migflow's finder) so the venv runs exactly the code under test.
    site_dir = next((base / "venv" / "lib").glob("python*/site-packages"))
    outer = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
    (site_dir / "zz_code_under_test.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in outer))
    v = Venv(base / "venv", package)
    v.install()
    yield v


def test_the_venv_runs_the_code_under_test(venv):
    import migflow

    proc = venv.run("-c", "import migflow, migflow_steps; print(migflow.__file__); print(migflow_steps.__file__)")
    assert proc.returncode == 0, proc.stderr
    import migflow_steps

    assert proc.stdout.split() == [migflow.__file__, migflow_steps.__file__]


def _example(plugins_json: str) -> dict | None:
    return next((p for p in json.loads(plugins_json)["plugins"] if p["name"] == "example"), None)


def test_plugins_lists_it_with_its_version(venv):
    proc = venv.migflow("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    info = _example(proc.stdout)
    assert info is not None, proc.stdout
    assert info["version"] == "0.1.0" and info["distribution"] == "migflow-example" and not info["builtin"]
    assert info["modes"] == ["p2p-compressed", "qmp-xbzrle"]
    assert info["steps"] == ["guest-check"] and info["commands"] == ["example"]
    text = venv.migflow("plugins").stdout
    assert "example 0.1.0 (from migflow-example, migflow_example)" in text


def test_its_command(venv):
    proc = venv.migflow("example", "hello", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"plugin": "migflow-example", "version": "0.1.0", "modes": ["p2p-compressed", "qmp-xbzrle"], "steps": ["guest-check"]}


def test_its_own_tests_pass(venv):
    proc = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(venv.package / "tests"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_validates(venv):
    proc = venv.migflow("validate", str(venv.package / WORKFLOW))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.lab
def test_workflow_runs_on_the_lab(venv, lab, tmp_path):
    db = tmp_path / "r.duckdb"
    proc = venv.migflow("run", str(venv.package / WORKFLOW), "--results", str(db), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        legs = con.execute("SELECT mode, status, list_sort(flags), xbzrle_cache_cache_size FROM migrations ORDER BY leg").fetchall()
        [(check,)] = con.execute("SELECT result FROM steps WHERE step = 'guest-check' AND status = 'completed'").fetchall()
    assert [(m, s) for m, s, _, _ in legs] == [("p2p-compressed", "completed")] * 2
    assert all(f == ["compressed", "live", "peer2peer"] and cache for _, _, f, cache in legs)  # xbzrle was in force
    assert json.loads(check)["alive"] is True
    # its own measurement, recorded through ctx.record_metric, is a statistic like migflow's
    with duckdb.connect(str(db), read_only=True) as con:
        [(n, mean, unit)] = con.execute("SELECT n, mean, unit FROM scenario_stats WHERE metric = 'example.wall_s'").fetchall()
        walls = [w for (w,) in con.execute("SELECT wall_ms FROM migrations ORDER BY leg").fetchall()]
    assert n == 2 and unit == "s" and abs(mean - sum(walls) / 2000.0) < 1e-6
    report = tmp_path / "r.html"
    rep = venv.migflow("report", "--results", str(db), "--output", str(report))
    assert rep.returncode == 0, rep.stderr
    html = report.read_text()
    start = html.index('id="metric-example.wall_s"')
    end = html.find('<div class="card"', start)
    card = html[start : end if end > 0 else len(html)]
    assert "recorded by plugin example" in card and card.count('class="dot"') == 2  # one dot per leg


def _outer_has_example() -> bool:
    proc = migflow("plugins", "--json", timeout=120)
    return proc.returncode == 0 and _example(proc.stdout) is not None


def test_uninstalled_the_workflow_fails_validation_naming_the_plugin(venv):
    # Where the main environment has it too (CI installs it there), the throw-away
    # environment would still see that copy: uninstall it from both, as a user would.
    envs = [venv]
    if _outer_has_example():
        outer = Venv(Path(sys.prefix), venv.package)
        outer.python = sys.executable
        envs.append(outer)
    for env in envs:
        env.uninstall()
    try:
        assert _example(venv.migflow("plugins", "--json").stdout) is None
        proc = venv.migflow("validate", str(venv.package / WORKFLOW))
        assert proc.returncode != 0
        assert "requires[0]: workflow needs plugin 'migflow-example', which is not installed (pip install migflow-example)" in proc.stdout + proc.stderr
        assert venv.migflow("example", "hello").returncode != 0
    finally:
        for env in envs:
            env.install()  # as found, for any test that runs after this one
    assert _example(venv.migflow("plugins", "--json").stdout) is not None


@pytest.mark.skipif(not os.environ.get("CI"), reason="CI installs the example into the main environment (.ci/run)")
def test_installed_by_ci():
    proc = migflow("plugins", "--json", timeout=120)
    info = _example(proc.stdout)
    assert info is not None and info["version"] == "0.1.0", "CI must run: python3 -m pip install ./docs/examples/migflow-example"
