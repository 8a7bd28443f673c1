"""Did you mean ...?  The one close-match rule of migflow's messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["closest", "did_you_mean", "did_you_mean_lead"]


def closest(word: Any, choices: Iterable[Any]) -> str | None:
    """The choice closest to ``word`` when it is close enough (difflib ratio 0.6), else None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` to end a message, or an empty string."""
    c = closest(word, choices)
    return f" (did you mean {c!r}?)" if c else ""


def did_you_mean_lead(word: Any, choices: Iterable[Any]) -> str:
    """``did you mean 'x'? `` to open a parenthesis, or an empty string."""
    c = closest(word, choices)
    return f"did you mean {c!r}? " if c else ""
