"""Secrets out of URIs and text before anything is stored or shown.

libvirt URIs can carry a password (``user:password@``) and query parameters
that name key files or commands (``keyfile``, ``pkipath``, ``command`` ...).
Everything migflow records or prints about a host passes through here: the
results store, the progress display, warnings and the backends' messages.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["REDACTED", "SENSITIVE_PARAMS", "redact_json", "redact_secrets_of", "redact_text", "redact_uri"]

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


def redact_secrets_of(text: str, *uris: str) -> str:
    """``text`` without the secrets the URIs carry, wherever they appear (a libvirt error
    that names the pkipath's files, say), and with :func:`redact_text` applied.

    >>> redact_secrets_of("Cannot read '/k/cacert.pem'", "qemu+tls://h/system?pkipath=/k")
    "Cannot read '***/cacert.pem'"
    """
    for uri in uris:
        try:
            query = urlsplit(uri).query
        except ValueError:
            continue
        for field in query.split("&"):
            name, eq, value = field.partition("=")
            value = unquote(value)
            if eq and len(value) > 1 and _sensitive(unquote(name)):
                text = text.replace(value, REDACTED)
    return redact_text(text) or ""


def redact_json(value: Any) -> Any:
    """:func:`redact_text` applied to every string (keys excepted) of a JSON-shaped value."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value
