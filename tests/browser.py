"""Load an HTML file in Debian's headless chromium and read back what the page's
own script wrote into ``#selfcheck``, plus console errors chromium logged."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (scripts/install-prereqs.sh installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium, or scripts/install-prereqs.sh)")
    return exe


class _SelfCheck(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: dict | None = None

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if d.get("id") == "selfcheck":
            self.attrs = d


def load(path, *extra) -> tuple[dict, str, list[str]]:
    """(#selfcheck attributes, the rendered DOM, console error lines)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, "--dump-dom", f"file://{os.path.abspath(path)}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = _SelfCheck()
    parser.feed(proc.stdout)
    console = [line for line in proc.stderr.splitlines() if re.search(r"CONSOLE|Uncaught|SyntaxError|ReferenceError|TypeError", line)]
    return parser.attrs or {}, proc.stdout, console


def screenshot(path, png, width=1400, height=3000) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}", f"file://{os.path.abspath(path)}"],
            capture_output=True,
            timeout=120,
            check=True,
        )
