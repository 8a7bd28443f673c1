"""The plugin's own tests, as its authors would ship them: a fresh plugin
manager with the plugin registered, no global state, no hosts."""

from __future__ import annotations

import click
import migflow_example
import pytest
from click.testing import CliRunner

from migflow.plugins import get_plugins


@pytest.fixture
def plugins(monkeypatch):
    """A fresh manager with the plugin registered by hand.  Entry points are
    switched off, or an installed copy of the plugin would be registered twice."""
    monkeypatch.setenv("MIGFLOW_LOAD_PLUGINS", "")
    return get_plugins(extra=(migflow_example,))


def test_modes_and_step_are_registered(plugins):
    assert plugins.modes["p2p-compressed"].flags == ("live", "peer2peer", "compressed")
    assert plugins.modes["p2p-compressed"].backend == "libvirt"
    assert plugins.modes["qmp-xbzrle"].backend == "qemu"
    assert "within_s" in plugins.steps["guest-check"].options_schema["properties"]


def test_hello_command():
    group = click.Group("migflow")
    migflow_example.migflow_register_commands(cli=group)
    result = CliRunner().invoke(group, ["example", "hello", "--json"])
    assert result.exit_code == 0, result.output
    assert '"steps": ["guest-check"]' in result.output


def test_guest_check_fails_without_a_heartbeat():
    from typing import ClassVar

    from migflow_example.steps import guest_check

    from migflow.errors import StepError

    class Ctx:
        state: ClassVar[dict] = {"domain": {"serial_path": None}}

    with pytest.raises(StepError, match="needs a guest with a heartbeat"):
        guest_check(Ctx(), {})
