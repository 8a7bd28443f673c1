"""The qemu backend's own QMP client against a fake QMP server, and its host URIs."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from migflow_qemu.hosts import resolve
from migflow_qemu.qmp import QMPClient, QMPConnectionError, QMPError

from migflow.errors import HostError


class FakeQMP:
    """A unix-socket QMP server: greeting, qmp_capabilities, scripted answers.

    ``handlers[command](arguments) -> (return value | Exception-like dict, events before the answer, delay)``.
    """

    def __init__(self, path, handlers):
        self.path = str(path)
        self.handlers = handlers
        self.received = []
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.conn = None
        threading.Thread(target=self._serve, daemon=True).start()

    def send(self, msg):
        try:
            self.conn.sendall(json.dumps(msg).encode() + b"\r\n")
        except OSError:
            pass  # the client under test hung up (a timeout test ends before a slow answer): nobody to tell

    def _serve(self):
        self.conn, _ = self.srv.accept()
        self.send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}})
        for line in self.conn.makefile("rb"):
            msg = json.loads(line)
            self.received.append(msg)
            threading.Thread(target=self._answer, args=(msg,), daemon=True).start()

    def _answer(self, msg):
        cmd = msg["execute"]
        if cmd == "qmp_capabilities":
            self.send({"return": {}, "id": msg["id"]})
            return
        result, events, delay = self.handlers[cmd](msg.get("arguments"))
        time.sleep(delay)
        for ev in events:
            self.send({"event": ev, "data": {"pass": 1}, "timestamp": {"seconds": 0, "microseconds": 0}})
        if isinstance(result, dict) and "class" in result:
            self.send({"error": result, "id": msg["id"]})
        else:
            self.send({"return": result, "id": msg["id"]})

    def close(self):
        if self.conn:
            self.conn.close()
        self.srv.close()


@pytest.fixture
def server(tmp_path):
    servers = []

    def make(handlers):
        s = FakeQMP(tmp_path / "qmp.sock", handlers)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_greeting_capabilities_and_a_command(server):
    s = server({"query-status": lambda a: ({"status": "running", "running": True}, [], 0)})
    with QMPClient(s.path).connect(timeout=5) as c:
        assert c.greeting["version"]["qemu"]["major"] == 7
        assert c.execute("query-status") == {"status": "running", "running": True}
    assert [m["execute"] for m in s.received] == ["qmp_capabilities", "query-status"]


def test_arguments_are_sent_and_errors_raise(server):
    s = server({"migrate": lambda a: ({"class": "GenericError", "desc": f"bad uri {a['uri']}"}, [], 0)})
    with QMPClient(s.path).connect(timeout=5) as c:
        with pytest.raises(QMPError, match="migrate: bad uri tcp:x:1") as info:
            c.execute("migrate", {"uri": "tcp:x:1"})
        assert info.value.error_class == "GenericError"


def test_events_are_kept_apart_from_answers(server):
    s = server({"migrate": lambda a: ({}, ["MIGRATION_PASS", "STOP"], 0)})
    with QMPClient(s.path).connect(timeout=5) as c:
        seen = []
        c.on_event = seen.append
        assert c.execute("migrate", {"uri": "tcp:a:1"}) == {}
        ev = c.wait_event(lambda e: e["event"] == "MIGRATION_PASS", 2)
        assert ev["data"] == {"pass": 1}
        assert [e["event"] for e in c.events()] == ["STOP"]  # the one not taken yet
        assert [e["event"] for e in seen] == ["MIGRATION_PASS", "STOP"]
        assert c.wait_event(lambda e: True, 0.05) is None


def test_concurrent_commands_get_their_own_answers(server):
    # the slow answer comes back after the fast ones: matched by id, not by order
    s = server({"slow": lambda a: ("slow", [], 0.3), "fast": lambda a: (a["n"], [], 0)})
    with QMPClient(s.path).connect(timeout=5) as c:
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("slow", c.execute("slow")))
        t.start()
        fast = [c.execute("fast", {"n": i}) for i in range(20)]
        t.join(5)
        assert fast == list(range(20)) and out["slow"] == "slow"


def test_closed_connection_and_timeouts(server, tmp_path):
    s = server({"hang": lambda a: (None, [], 60)})
    c = QMPClient(s.path).connect(timeout=5)
    with pytest.raises(QMPConnectionError, match="no answer"):
        c.execute("hang", timeout=0.1)
    s.conn.close()  # QEMU exits
    with pytest.raises(QMPConnectionError):
        for _ in range(50):
            c.execute("hang", timeout=0.2)
            time.sleep(0.01)
    c.close()
    with pytest.raises(QMPConnectionError, match="cannot connect"):
        QMPClient(str(tmp_path / "nothing.sock")).connect(timeout=0.2)
    with pytest.raises(QMPConnectionError, match="cannot connect"):  # the process is gone: no waiting
        t0 = time.monotonic()
        QMPClient(str(tmp_path / "nothing.sock")).connect(timeout=30, alive=lambda: False)
    assert time.monotonic() - t0 < 5


def test_a_peer_that_accepts_and_stays_silent_is_given_up_on(tmp_path):
    """No greeting: connect() ends at its timeout instead of waiting forever."""
    path = tmp_path / "silent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    try:
        t0 = time.monotonic()
        with pytest.raises(QMPConnectionError, match=r"no greeting within 0\.5 s"):
            QMPClient(str(path)).connect(timeout=0.5)
        assert time.monotonic() - t0 < 3
    finally:
        srv.close()


def test_an_error_without_id_answers_the_waiting_command(server):
    """QEMU answers a request it cannot parse with an error that has no id: the caller hears it at once."""
    s = server({"broken": lambda a: (None, [], 0)})

    def no_id(msg):  # this command's error comes without its id
        s.send({"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'broken'"}})

    s._answer = lambda msg, _orig=s._answer: no_id(msg) if msg["execute"] == "broken" else _orig(msg)
    with QMPClient(s.path).connect(timeout=5) as c:
        t0 = time.monotonic()
        with pytest.raises(QMPError, match="JSON parse error"):
            c.execute("broken", timeout=20)
        assert time.monotonic() - t0 < 2  # not the whole timeout


def test_host_uris():
    from migflow.plugins import get_plugins

    hook = get_plugins().hook
    a = resolve("qemu+lab://mflab-a", hook)
    assert (a.kind, a.name, a.address) == ("plugin", "mflab-a", "198.18.0.1")
    assert a.runner is not None and a.runner.same_machine
    assert resolve("qemu+lab://b", hook).address == "198.18.0.2"
    assert resolve("qemu+tcp://198.18.0.2/system", hook).name == "mflab-b"  # the lab's libvirt URI
    local = resolve("qemu+local://127.0.0.2", hook)
    assert (local.kind, local.address) == ("local", "127.0.0.2")
    assert local.argv(["qemu-system-x86_64", "-version"]) == ["qemu-system-x86_64", "-version"]
    for bad in ("qemu+ssh://root@a/system", "qemu+tcp://a/system", "qemu+local://not-an-address", "qemu+lab://mflab-z", "nonsense"):
        with pytest.raises(HostError):
            resolve(bad, hook)


def test_lab_hosts_need_the_lab_plugin(monkeypatch):
    """The qemu backend reaches lab hosts only through the lab plugin's hook: disabled lab, clear error."""
    from migflow.plugins import get_plugins

    monkeypatch.setenv("MIGFLOW_DISABLE_PLUGINS", "lab")
    with pytest.raises(HostError, match="no plugin manages that lab host") as info:
        resolve("qemu+lab://mflab-a", get_plugins().hook)
    assert "MIGFLOW_DISABLE_PLUGINS" in (info.value.hint or "")


def test_qemu_modes_refuse_libvirt_only_flags(tmp_path):
    from migflow.plugins import get_plugins
    from migflow.workflow.loader import load_workflow

    wf = tmp_path / "w.toml"
    wf.write_text('name = "w"\nbackend = "qemu"\n[domain]\nname = "x"\n[[steps]]\nuse = "migrate"\nmode = "qmp-tcp"\nflags = ["persistent"]\n')
    from migflow.errors import MigflowError

    with pytest.raises(MigflowError) as info:
        load_workflow(str(wf), get_plugins())
    text = str(info.value) + json.dumps(getattr(info.value, "issues", None), default=str)
    assert "persistent" in text and "[domain.create]" in text
