"""Find the TOML line where a JSON path is defined.

``tomllib`` gives values without positions, so validation messages would
have no line numbers.  This module scans the (already valid) TOML text once
and records, for every key path, the 1-based line where it is defined:

* ``key = value`` lines, dotted (``a.b = 1``) and quoted (``"a b" = 1``) keys;
* ``[table]`` headers, and ``[[array.of.tables]]`` occurrences by index;
* inside values: inline tables (``{ a = 1 }``) and arrays, also across lines,
  each element at the line where it starts.

:class:`Locator` looks up the longest recorded prefix of a path, so a
missing key is reported at its enclosing table's line.  The scanner is
best-effort and never raises: on text it cannot follow it keeps what it has.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

__all__ = ["Locator", "index_lines", "line_of"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.lines: dict[tuple, int] = {}
        self._nl = [m.start() for m in re.finditer("\n", text)]
        self._aot: dict[tuple, int] = {}  # array-of-tables path -> entries so far

    # -- helpers ------------------------------------------------------------
    def line(self, pos: int | None = None) -> int:
        return bisect.bisect_left(self._nl, self.i if pos is None else pos) + 1

    def record(self, path: tuple, line: int, *, override: bool = False) -> None:
        if override or path not in self.lines:
            self.lines[path] = line

    def peek(self, n: int = 1) -> str:
        return self.text[self.i : self.i + n]

    def skip_ws(self, newlines: bool) -> None:
        t = self.text
        while self.i < len(t):
            c = t[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(t) and t[self.i] != "\n":
                    self.i += 1
            else:
                return

    def skip_line(self) -> None:
        j = self.text.find("\n", self.i)
        self.i = len(self.text) if j < 0 else j + 1

    # -- keys ---------------------------------------------------------------
    def simple_key(self) -> str:
        t, c = self.text, self.peek()
        if c == '"':
            j = self.i + 1
            while j < len(t) and t[j] != '"':
                j += 2 if t[j] == "\\" else 1
            raw = t[self.i : j + 1]
            self.i = j + 1
            try:
                import tomllib

                return next(iter(tomllib.loads(f"{raw} = 0")))
            except Exception:
                return raw[1:-1]
        if c == "'":
            j = t.find("'", self.i + 1)
            j = len(t) if j < 0 else j
            key = t[self.i + 1 : j]
            self.i = j + 1
            return key
        m = _BARE.match(t, self.i)
        if not m:
            raise ValueError(f"no key at offset {self.i}")
        self.i = m.end()
        return m.group()

    def dotted_key(self) -> list[str]:
        keys = [self.simple_key()]
        while True:
            self.skip_ws(False)
            if self.peek() != ".":
                return keys
            self.i += 1
            self.skip_ws(False)
            keys.append(self.simple_key())

    # -- values -------------------------------------------------------------
    def value(self, path: tuple) -> None:
        t = self.text
        if t.startswith('"""', self.i) or t.startswith("'''", self.i):
            q = t[self.i : self.i + 3]
            j = self.i + 3
            while j < len(t):
                if q == '"""' and t[j] == "\\":
                    j += 2
                elif t.startswith(q, j):
                    j += 3
                    extra = 0
                    while j < len(t) and t[j] == q[0] and extra < 2:  # '''a'''' ends with a quote
                        j, extra = j + 1, extra + 1
                    break
                else:
                    j += 1
            self.i = j
        elif self.peek() == '"' or self.peek() == "'":
            self.simple_key()  # same lexical rules as a quoted key
        elif self.peek() == "[":
            self.i += 1
            n = 0
            while self.i < len(t):
                self.skip_ws(True)
                if self.peek() == "]":
                    self.i += 1
                    return
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.record(path + (n,), self.line())
                self.value(path + (n,))
                n += 1
        elif self.peek() == "{":
            self.i += 1
            while self.i < len(t):
                self.skip_ws(True)
                if self.peek() == "}":
                    self.i += 1
                    return
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.key_value(path)
        else:
            m = _SCALAR_END.search(t, self.i)
            end = len(t) if not m else m.start()
            if end == self.i:  # nothing to consume: avoid looping forever
                raise ValueError(f"unexpected {t[self.i]!r} at offset {self.i}")
            self.i = end

    def key_value(self, table: tuple) -> None:
        line = self.line()
        keys = self.dotted_key()
        for k in range(1, len(keys) + 1):
            self.record(table + tuple(keys[:k]), line)
        self.skip_ws(False)
        if self.peek() != "=":
            raise ValueError(f"expected '=' at offset {self.i}")
        self.i += 1
        self.skip_ws(False)
        self.value(table + tuple(keys))

    # -- document -----------------------------------------------------------
    def resolve(self, keys: list[str]) -> tuple:
        """Header keys to a path, entering the latest entry of each array of tables."""
        path: tuple = ()
        for k in keys:
            path += (k,)
            if path in self._aot:
                path += (self._aot[path] - 1,)
        return path

    def document(self) -> None:
        t = self.text
        table: tuple = ()
        while True:
            self.skip_ws(True)
            if self.i >= len(t):
                return
            line = self.line()
            if t.startswith("[[", self.i):
                self.i += 2
                self.skip_ws(False)
                keys = self.dotted_key()
                parent = self.resolve(keys[:-1])
                aot = parent + (keys[-1],)
                n = self._aot.get(aot, 0)
                self._aot[aot] = n + 1
                for k in range(1, len(aot) + 1):
                    self.record(aot[:k], line)
                table = aot + (n,)
                self.record(table, line, override=True)
                self.skip_line()
            elif self.peek() == "[":
                self.i += 1
                self.skip_ws(False)
                keys = self.dotted_key()
                table = self.resolve(keys)
                for k in range(1, len(table)):
                    self.record(table[:k], line)
                self.record(table, line, override=True)
                self.skip_line()
            else:
                self.key_value(table)
                self.skip_ws(False)
                if self.peek() == "\n":
                    self.i += 1


def index_lines(text: str) -> dict[tuple, int]:
    """Every key path defined in ``text`` -> its 1-based line (best effort)."""
    s = _Scanner(text)
    try:
        s.document()
    except Exception:  # keep what was found; positions are a convenience
        pass
    return s.lines


class Locator:
    """Line lookups for one TOML text."""

    def __init__(self, text: str):
        self.lines = index_lines(text)

    def line(self, path: Iterable) -> int | None:
        """The line defining ``path`` or, failing that, its nearest recorded ancestor.

        ``None`` for the document itself (a missing top-level key).
        """
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None


def line_of(text: str, path: Iterable) -> int | None:
    """One-off lookup; use :class:`Locator` for many."""
    return Locator(text).line(path)
