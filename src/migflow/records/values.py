"""Turning what callers hand the recorder into column values, and URI redaction.

Values are checked when they are added (so a programming mistake fails at the
call that made it, not at ingest) and kept in a JSON-friendly form in the
spool: timestamps as ISO-8601 strings in UTC, JSON columns as objects.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from .schema import TABLES

__all__ = ["REDACTED", "normalize_row", "redact_json", "redact_text", "redact_uri", "to_timestamp"]

REDACTED = "***"

#: query parameters of libvirt URIs whose values are secrets or reveal files.
SENSITIVE_PARAMS = frozenset({"keyfile", "pkipath", "known_hosts", "command", "socket", "netcat", "sshauth", "password"})
_SENSITIVE_PARTS = ("pass", "secret", "key", "token")


def _sensitive(name: str) -> bool:
    n = name.lower()
    return n in SENSITIVE_PARAMS or any(p in n for p in _SENSITIVE_PARTS)


def redact_uri(uri: str | None) -> str | None:
    """Remove secrets from a (libvirt) URI: ``user:password@`` keeps the user
    and replaces the password; sensitive query parameters (``keyfile``,
    ``pkipath``, ``known_hosts``, ``command``, ``socket``, ``netcat``,
    ``sshauth``, ``password`` and any containing pass/secret/key/token) keep
    their name with the value replaced by ``***``.

    >>> redact_uri("qemu+ssh://root:secret@h/system?keyfile=/k&no_verify=1")
    'qemu+ssh://root:***@h/system?keyfile=***&no_verify=1'
    """
    if uri is None:
        return None
    uri = str(uri)
    try:
        parts = urlsplit(uri)
    except ValueError:
        return REDACTED  # unparsable: keep nothing rather than a secret
    out = uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            out = out.replace("//" + netloc, f"//{user}:{REDACTED}@{hostport}", 1)
    if parts.query:
        fields = []
        for field in parts.query.split("&"):
            name, eq, _value = field.partition("=")
            fields.append(f"{name}={REDACTED}" if eq and _sensitive(unquote(name)) else field)
        query = "&".join(fields)
        if query != parts.query:
            head, _, tail = out.partition("?")
            out = head + "?" + tail.replace(parts.query, query, 1)
    return out


_URI_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>`]+""")


def redact_text(text: str | None) -> str | None:
    """:func:`redact_uri` applied to every URI inside free text (an error message, a log line).

    >>> redact_text("cannot connect to 'qemu+ssh://u:pw@h/system?keyfile=/k': refused")
    "cannot connect to 'qemu+ssh://u:***@h/system?keyfile=***': refused"
    """
    if text is None:
        return None

    def one(m: re.Match) -> str:
        uri = m.group(0)
        tail = len(uri) - len(uri.rstrip(".,;:)]}"))  # punctuation of the sentence, not the URI
        uri, rest = (uri[:-tail], uri[-tail:]) if tail else (uri, "")
        return (redact_uri(uri) or REDACTED) + rest

    return _URI_IN_TEXT.sub(one, str(text))


def redact_json(value: Any) -> Any:
    """:func:`redact_text` applied to every string (keys excepted) of a JSON-shaped value."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value


def to_timestamp(value: Any) -> str | None:
    """datetime (naive = local time), epoch seconds or ISO string -> ISO UTC string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        d = _dt.datetime.fromtimestamp(float(value), tz=_dt.UTC)
    elif isinstance(value, _dt.datetime):
        d = value if value.tzinfo else value.astimezone()
    elif isinstance(value, str):
        d = _dt.datetime.fromisoformat(value)
        d = d if d.tzinfo else d.astimezone()
    else:
        raise ValueError(f"not a timestamp (datetime, epoch seconds or ISO string): {value!r}")
    return d.astimezone(_dt.UTC).isoformat()


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return round(value)
    if isinstance(value, str):
        return int(float(value)) if any(c in value for c in ".eE") else int(value)
    raise ValueError(f"not an integer: {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def _to_json(value: Any) -> Any:
    # Round trip now so that the spool holds plain JSON and errors surface here.
    return json.loads(json.dumps(value, default=str))


def _to_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    raise ValueError(f"not a list of strings: {value!r}")


_CONVERT = {
    "VARCHAR": str,
    "INTEGER": _to_int,
    "BIGINT": _to_int,
    "DOUBLE": _to_float,
    "JSON": _to_json,
    "TIMESTAMPTZ": to_timestamp,
    "VARCHAR[]": _to_list,
}


def normalize_row(table: str, row: dict, *, partial: bool = True) -> dict:
    """Check and convert ``row`` for ``table``.  A key that is not a column of
    the table raises ``ValueError`` naming it (use the ``extra`` column, where
    the table has one, for anything else)."""
    types = {c: t for c, t, _ in TABLES[table]}
    unknown = [k for k in row if k not in types]
    if unknown:
        hint = " (put anything else in 'extra')" if "extra" in types else ""
        raise ValueError(f"{table}: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{hint}; columns are: {', '.join(types)}")
    out = {}
    for key, value in row.items():
        if value is None:
            out[key] = None
            continue
        try:
            out[key] = _CONVERT[types[key]](value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{table}.{key} ({types[key]}): {exc}") from None
    return out
