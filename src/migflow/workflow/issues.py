"""Collecting a workflow's problems: every one at once, each with its file, line and path."""

from __future__ import annotations

from ..errors import ValidationIssue
from .locate import Locator
from .paths import format_path

__all__ = ["Issues", "MissingPlugin", "PerScenario"]


class MissingPlugin(ValidationIssue):
    """An issue saying that a plugin the workflow ``requires`` is not installed
    (:func:`load_workflow` then raises a :class:`WorkflowError` with exit status 3)."""

    __slots__ = ()


class Issues:
    """Issues of one file, deduplicated, in the order found."""

    def __init__(self, file: str, locator: Locator | None = None):
        self.file, self.locator = file, locator
        self.items: list[ValidationIssue] = []
        self._seen: set[tuple] = set()
        self.paths: list[list] = []

    def add(self, path: list, message: str, *, line: int | None = None, shown_path: str | None = None, kind: type = ValidationIssue) -> None:
        key = (tuple(path), shown_path, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.paths.append(list(path))
        if line is None and self.locator is not None:
            line = self.locator.line(path)
        self.items.append(kind(self.file, line, shown_path or format_path(path), message))

    def touches(self, *top: str) -> bool:
        """Whether any issue so far is under one of these top-level keys."""
        return any(p and p[0] in top for p in self.paths)

    def __bool__(self) -> bool:
        return bool(self.items)


class PerScenario:
    """Issues found per scenario: reported once when every scenario has them, else with the label."""

    def __init__(self, n_scenarios: int):
        self.n = n_scenarios
        self.found: dict[tuple, list[str]] = {}

    def add(self, label: str, path: list, message: str) -> None:
        labels = self.found.setdefault((tuple(path), message), [])
        if label not in labels:
            labels.append(label)

    def flush(self, issues: Issues) -> None:
        for (path, message), labels in self.found.items():
            if len(labels) == self.n and self.n > 0:
                issues.add(list(path), message)
            else:
                for lab in labels:
                    issues.add(list(path), f"in scenario {lab}: {message}")
