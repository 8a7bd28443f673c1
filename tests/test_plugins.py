"""The plugin manager: built-ins on the public hooks, broken third-party
plugins, strict mode, switches, order, and the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
from cli_runner import migflow

from migflow.errors import PluginError
from migflow.hookspecs import hookimpl
from migflow.plugins import DEFAULT_PLUGINS, PluginLoadWarning, get_plugins
from migflow.registry import GuestImage, ModeSpec

ROOT = Path(__file__).resolve().parent.parent


def test_builtins_provide_the_five_steps_backends_and_seed_modes():
    plugins = get_plugins()
    assert {"prepare-domain", "set-capabilities", "migrate", "collect-qmp", "restore", "shape-link"} <= set(plugins.steps)
    assert {"libvirt", "qemu"} <= set(plugins.backends)
    assert {"managed-direct", "p2p", "p2p-tunnelled", "unmanaged-direct", "zstack"} <= set(plugins.modes)
    assert plugins.modes["zstack"].flags == ("live", "peer2peer", "undefinesource", "persistent")
    assert [i.name for i in plugins.infos[: len(DEFAULT_PLUGINS)]] == [n for n, _ in DEFAULT_PLUGINS]
    assert plugins.steps["restore"].always_run and plugins.steps["collect-qmp"].always_run


class LateGuest:
    """A third-party plugin registered after the built-ins."""

    @hookimpl
    def migflow_guest_image(self, workload, create, guest):
        return GuestImage(kernel="/boot/mine", cmdline="x")

    @hookimpl
    def migflow_register_modes(self, register):
        register(ModeSpec("p2p", "libvirt", ("live", "peer2peer", "compressed"), override=True))


def test_a_later_plugin_overrides_firstresult_hooks_and_registrations():
    plugins = get_plugins(extra=(LateGuest(),))
    assert plugins.hook.migflow_guest_image(workload={}, create={}, guest=1).kernel == "/boot/mine"
    assert plugins.modes["p2p"].flags == ("live", "peer2peer", "compressed")


class Misspelled:
    @hookimpl
    def migflow_register_stepz(self, register):  # not a hook
        pass


def test_a_misspelled_hook_skips_the_plugin_with_a_named_warning():
    with pytest.warns(PluginLoadWarning, match="migflow_register_stepz is not a migflow hook \\(did you mean 'migflow_register_steps'\\?\\)"):
        plugins = get_plugins(extra=(Misspelled(),))
    assert "Misspelled" not in " ".join(i.name for i in plugins.infos)
    with pytest.raises(PluginError, match="did you mean 'migflow_register_steps'"):
        get_plugins(strict=True, extra=(Misspelled(),))


def test_a_registration_never_replaces_another_plugins_silently():
    class Clash:
        @hookimpl
        def migflow_register_modes(self, register):
            register(ModeSpec("p2p", "libvirt", ("live",)))

    with pytest.warns(PluginLoadWarning, match="registers the mode 'p2p', which plugin 'libvirt' already provides: refused"):
        plugins = get_plugins(extra=(Clash(),))
    assert plugins.modes["p2p"].flags == ("live", "peer2peer")  # the built-in stays


def _distribution(tmp_path: Path, name: str, code: str) -> dict:
    """An installed third-party plugin: a distribution with an entry point, visible through PYTHONPATH."""
    site = tmp_path / f"site-{name}"
    (site / f"{name}_pkg").mkdir(parents=True)
    (site / f"{name}_pkg" / "__init__.py").write_text(textwrap.dedent(code))
    info = site / f"migflow_{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: migflow-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[migflow]\n{name} = {name}_pkg\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))


TRAPS = {
    "restore": (
        """
        from migflow.hookspecs import hookimpl
        from migflow.registry import StepSpec
        @hookimpl
        def migflow_register_steps(register):
            register(StepSpec("restore", lambda ctx, options: {}))
        """,
        "registers the step 'restore', which plugin 'steps' already provides: refused",
    ),
    "typo": (
        """
        def migflow_leg_finshed(ctx, leg):
            pass
        """,
        "migflow_leg_finshed is not a migflow hook (did you mean 'migflow_leg_finished'?)",
    ),
    "undecorated": (
        """
        def migflow_leg_finished(ctx, leg):
            pass
        """,
        "migflow_leg_finished has no @hookimpl, so it would never be called",
    ),
    "decoratedtypo": (
        """
        from migflow.hookspecs import hookimpl
        @hookimpl
        def migflow_run_finshed(ctx):
            pass
        """,
        "migflow_run_finshed is not a migflow hook (did you mean 'migflow_run_finished'?)",
    ),
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_plugin_traps_are_named_errors_that_leave_other_commands_usable(tmp_path, trap):
    code, says = TRAPS[trap]
    env = _distribution(tmp_path, trap, code)
    listed = migflow("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    failures = json.loads(listed.stdout)["failures"]
    assert any(says in f and f"migflow-{trap}" in f for f in failures), failures
    assert migflow("--help", env=env).returncode == 0  # unrelated commands still work
    checked = migflow("validate", str(ROOT / "workflows" / "p2p.toml"), env=env)
    assert checked.returncode == 0 and says in checked.stderr, checked.stdout + checked.stderr
    strict = migflow("--strict-plugins", "plugins", env=env)
    assert strict.returncode == 3 and says in strict.stderr and f"migflow-{trap}" in strict.stderr, strict.stderr
    assert "Traceback" not in strict.stderr


def test_an_explicit_override_is_listed(tmp_path):
    env = _distribution(
        tmp_path,
        "keep",
        """
        from migflow.hookspecs import hookimpl
        from migflow.registry import StepSpec
        @hookimpl
        def migflow_register_steps(register):
            register(StepSpec("restore", lambda ctx, options: {"mine": True}, always_run=True, override=True))
        """,
    )
    listed = json.loads(migflow("plugins", "--json", env=env).stdout)
    [mine] = [p for p in listed["plugins"] if p["name"] == "keep"]
    assert mine["overrides"] == ["step restore (from steps)"] and not listed["failures"]
    assert "overrides: step restore (from steps)" in migflow("plugins", env=env).stdout


def _broken_distribution(tmp_path: Path) -> dict:
    """A distribution whose entry point fails to import, visible through PYTHONPATH."""
    dist = tmp_path / "site"
    (dist / "broken_plugin_pkg").mkdir(parents=True)
    (dist / "broken_plugin_pkg" / "__init__.py").write_text("raise RuntimeError('this plugin is broken')\n")
    info = dist / "migflow_broken-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: migflow-broken\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[migflow]\nbroken = broken_plugin_pkg\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(dist), os.environ.get("PYTHONPATH")])))


def test_a_broken_plugin_warns_naming_it_and_its_distribution(tmp_path):
    env = _broken_distribution(tmp_path)
    proc = migflow("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "broken" not in [p["name"] for p in data["plugins"]]
    assert any("'broken'" in f and "migflow-broken" in f and "this plugin is broken" in f for f in data["failures"])
    proc = migflow("validate", str(ROOT / "workflows" / "p2p.toml"), env=env)
    assert proc.returncode == 0 and "migflow-broken" in proc.stderr and "Traceback" not in proc.stderr


def test_strict_mode_makes_a_broken_plugin_an_error(tmp_path):
    env = _broken_distribution(tmp_path)
    for args, extra_env in ((["--strict-plugins", "plugins"], {}), (["plugins"], {"MIGFLOW_STRICT_PLUGINS": "1"})):
        proc = migflow(*args, env={**env, **extra_env})
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "migflow-broken" in proc.stderr and "Traceback" not in proc.stderr


def test_disable_switch_and_plugin_modules(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGFLOW_DISABLE_PLUGINS", "lab")
    plugins = get_plugins()
    assert "lab" not in [i.name for i in plugins.infos] and "shape-link" not in plugins.steps
    monkeypatch.delenv("MIGFLOW_DISABLE_PLUGINS")
    (tmp_path / "local_modes.py").write_text(
        textwrap.dedent("""
        from migflow.hookspecs import hookimpl
        from migflow.registry import ModeSpec
        @hookimpl
        def migflow_register_modes(register):
            register(ModeSpec("p2p-local", "libvirt", ("live", "peer2peer")))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MIGFLOW_PLUGIN_MODULES", "local_modes")
    assert "p2p-local" in get_plugins().modes
    monkeypatch.setenv("MIGFLOW_PLUGIN_MODULES", "no_such_module_here")
    with pytest.warns(PluginLoadWarning, match="no_such_module_here"):
        get_plugins()


def test_installed_package_validates_from_outside_the_checkout(tmp_path):
    """pip install . into a fresh virtualenv: schemas and built-in plugins travel with it."""
    src = tmp_path / "src"  # build from a copy: pip's in-tree build files stay out of the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "*.duckdb*", ".pytest_cache"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)  # the dependencies come from this interpreter
    py = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(py)] if _pip_has_python_option() else [str(py), "-m", "pip"]
    build = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--disable-pip-version-check", "--root-user-action=ignore", str(src)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    where = subprocess.run(
        [str(py), "-c", "import migflow, migflow_steps; print(migflow.__file__); print(migflow_steps.__file__)"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert all(str(env_dir) in line for line in where.stdout.split()), where.stdout  # the installed copy, not the checkout
    wf = tmp_path / "wf.toml"
    wf.write_text((ROOT / "workflows" / "zstack_default.toml").read_text())
    proc = subprocess.run([str(env_dir / "bin" / "migflow"), "validate", str(wf)], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stdout + proc.stderr
    schema = subprocess.run([str(env_dir / "bin" / "migflow"), "schema"], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert "collect-qmp" in schema.stdout


def _pip_has_python_option() -> bool:
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], check=False, capture_output=True, text=True).stdout
    major = int(out.split()[1].split(".")[0])
    return major >= 22


GUEST_WORKFLOW = """
name = "g"
[domain.create]
guest = "mine"
[domain.create.workload]
whatever = 1
[[steps]]
use = "prepare-domain"
"""


def test_a_third_party_guest_is_not_refused_by_the_lab():
    from migflow.workflow.loader import check_text

    _wf, issues = check_text(GUEST_WORKFLOW, "g.toml", get_plugins(extra=(LateGuest(),)))
    assert issues == []
    _wf, issues = check_text(GUEST_WORKFLOW, "g.toml", get_plugins())  # nobody provides it: named, with what the lab offers
    assert [(i.path, i.message) for i in issues] == [("domain.create.guest", "no plugin provides the guest 'mine'; the lab offers tiny, linux")]
