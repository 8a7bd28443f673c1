"""Link shaping between the lab's hosts with ``tc``: tbf for the rate, netem for
delay, jitter and loss.

Each host shapes its own egress (its veth inside its namespace), so the two
directions of the link are shaped alike; ``delay_ms`` is therefore one-way and the
round-trip time grows by twice that.

Only plain data and ``tc`` argument lists here; running them is :mod:`.hosts`' job.
"""

from __future__ import annotations

import re

from migflow.errors import UsageError

__all__ = ["LINK_KEYS", "RATE_PATTERN", "normalize", "options_schema", "parse_rate", "tc_commands"]

#: a tc rate in bits per second: ``500kbit``, ``100mbit``, ``1gbit``, ``2.5gbit``, ``1000000bit``.
RATE_PATTERN = r"^[0-9]+(\.[0-9]+)?[kKmMgGtT]?bit$"
_RATE_RE = re.compile(RATE_PATTERN)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

LINK_KEYS = ("rate", "delay_ms", "jitter_ms", "loss_pct")


def parse_rate(rate: str) -> int:
    """``"100mbit"`` -> 100_000_000 (bits per second).  Raises UsageError when malformed."""
    if not isinstance(rate, str) or not _RATE_RE.match(rate):
        raise UsageError(f"bad rate {rate!r}", hint="write a number and a unit: 500kbit, 100mbit, 1gbit")
    number = rate[:-3]
    unit = number[-1].lower() if number[-1].isalpha() else ""
    if unit:
        number = number[:-1]
    bps = int(float(number) * _UNITS[unit])
    if bps < 8000:
        raise UsageError(f"rate {rate!r} is too low", hint="use at least 8kbit")
    return bps


def normalize(rate=None, delay_ms=None, jitter_ms=None, loss_pct=None) -> dict:
    """Check values and return the link dict ``{rate, delay_ms, jitter_ms, loss_pct}``
    (None where not shaped; zeros become None)."""
    if rate is not None:
        rate = str(rate).lower()
        parse_rate(rate)
    out = {"rate": rate}
    for key, value, top in (("delay_ms", delay_ms, None), ("jitter_ms", jitter_ms, None), ("loss_pct", loss_pct, 100.0)):
        if value is None:
            out[key] = None
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{key} must be a number, not {value!r}") from None
        if value < 0 or (top is not None and value > top):
            raise UsageError(f"{key} must be between 0 and {top if top is not None else 'infinity'}, not {value:g}")
        out[key] = value if value > 0 else None
    if out["jitter_ms"] and not out["delay_ms"]:
        raise UsageError("jitter needs a delay", hint="give --delay-ms too, e.g. --delay-ms 5 --jitter-ms 1")
    return out


def _ms(value: float) -> str:
    return f"{value:g}ms"


def tc_commands(dev: str, link: dict) -> list[list[str]]:
    """The ``tc`` commands that give ``dev`` the shaping of ``link`` (after its root qdisc was removed).

    netem (delay/jitter/loss) is the root with handle 1:, and tbf (rate) its child;
    with a rate only, tbf is the root.  An empty list means no shaping.
    """
    cmds: list[list[str]] = []
    netem: list[str] = []
    if link.get("delay_ms"):
        netem += ["delay", _ms(link["delay_ms"])]
        if link.get("jitter_ms"):
            netem += [_ms(link["jitter_ms"]), "distribution", "normal"]
    if link.get("loss_pct"):
        netem += ["loss", f"{link['loss_pct']:g}%"]
    parent = ["root"]
    if netem:
        cmds.append(["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem", "limit", "100000", *netem])
        parent = ["parent", "1:1"]
    if link.get("rate"):
        bps = parse_rate(link["rate"])
        # The bucket must hold at least one timer tick's worth of traffic at high rates
        # (1gbit / 250 Hz = 500 kB), and a few full-size packets at low ones.
        burst = max(bps // 8 // 250, 32 * 1024)
        cmds.append(["tc", "qdisc", "add", "dev", dev, *parent, "handle", "10:", "tbf", "rate", link["rate"], "burst", str(burst), "latency", "50ms"])
    return cmds


def options_schema() -> dict:
    """JSON Schema for the ``shape-link`` step's options."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rate": {"type": "string", "pattern": RATE_PATTERN, "description": "bandwidth of the link, e.g. 1gbit, 100mbit, 500kbit"},
            "delay_ms": {"type": "number", "minimum": 0, "description": "one-way delay added on each direction (netem)"},
            "jitter_ms": {"type": "number", "minimum": 0, "description": "delay variation (netem; needs delay_ms)"},
            "loss_pct": {"type": "number", "minimum": 0, "maximum": 100, "description": "packet loss in percent (netem)"},
            "clear": {"type": "boolean", "description": "remove all shaping (cannot be combined with the other options)"},
        },
    }
