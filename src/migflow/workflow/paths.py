"""JSON paths as messages show them: ``steps[2].mode``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["format_path", "parse_path"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: Iterable) -> str:
    """``["steps", 2, "mode"]`` -> ``steps[2].mode``; ``(top level)`` for the document."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            key = p if _BARE_KEY.match(str(p)) else '"' + str(p).replace('"', '\\"') + '"'
            out += ("." if out else "") + key
    return out or "(top level)"


def parse_path(path: Any) -> list:
    """A path as plugins give it (``"steps[2].mode"`` or a list) -> a list of keys and indices."""
    if isinstance(path, (list, tuple)):
        return list(path)
    out: list = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|\[(\d+)\]|([^.\[\]"]+)', str(path or "")):
        if m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(1) if m.group(1) is not None else m.group(3))
    return out
