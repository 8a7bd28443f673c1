"""``migflow lab``: bring the embedded two-host lab up and down, show it, shape its link."""

from __future__ import annotations

import json

import click

from migflow.errors import UsageError

from .shaping import RATE_PATTERN

__all__ = ["lab_group"]


def _rate(ctx, param, value):
    if value is None:
        return None
    from .shaping import parse_rate

    try:
        parse_rate(value)
    except UsageError as exc:
        raise click.BadParameter(f"{value!r}: {exc.hint}") from None
    return value.lower()


def _shaping_options(f):
    f = click.option("--loss-pct", type=click.FloatRange(0, 100), help="Packet loss in percent (netem), e.g. 0.1.")(f)
    f = click.option("--jitter-ms", type=click.FloatRange(min=0), help="Delay variation in ms (netem; needs --delay-ms).")(f)
    f = click.option("--delay-ms", type=click.FloatRange(min=0), help="One-way delay in ms, added on each direction (netem).")(f)
    f = click.option("--rate", callback=_rate, metavar="RATE", help=f"Bandwidth of the link (tbf): 500kbit, 100mbit, 1gbit (pattern {RATE_PATTERN}).")(f)
    return f


@click.group("lab")
def lab_group() -> None:
    """The embedded two-host lab: two libvirt hosts on this machine (needs root).

    Each host is a network namespace with its own libvirtd, joined by a veth
    pair to the bridge mflab0 (198.18.0.254/24) in the root namespace:

    \b
      mflab-a  198.18.0.1  qemu+tcp://198.18.0.1/system
      mflab-b  198.18.0.2  qemu+tcp://198.18.0.2/system

    Each also listens on TLS, qemu+tls://ADDRESS/system?pkipath=/var/lib/migflow-lab/pki/client
    (`migflow lab status` prints the URIs).

    Workflows that name no hosts use the lab, and `migflow run` brings it up
    when needed.  State: /var/lib/migflow-lab/state.json.

    \b
    Examples:
      migflow lab up
      migflow lab up --rate 1gbit --delay-ms 5 --loss-pct 0.1
      migflow lab status --json
      migflow lab shape --rate 100mbit
      migflow lab shape --clear
      migflow lab down
    """


@lab_group.command("up")
@_shaping_options
@click.option("--tls", is_flag=True, help="Then connect to both hosts over TLS with the lab's client certificate and print their qemu+tls:// URIs.")
def up_cmd(rate, delay_ms, jitter_ms, loss_pct, tls: bool) -> None:
    """Bring the lab up (idempotent), optionally shaping the link.

    A second `up` while the lab is healthy changes nothing (except the
    shaping, when given).  Leftovers of a lab that was killed (namespaces,
    bridge, daemons, domains) are cleaned up first.

    TLS is always set up: a private CA under /var/lib/migflow-lab/pki,
    libvirtd listening on 16514 and checking client certificates, and
    QEMU's migration TLS (the migrate step's `tls` flag).  Nothing is
    written to /etc/pki.  With --tls, `up` also proves a TLS connection to
    each host works.

    \b
    Examples:
      migflow lab up
      migflow lab up --tls
      migflow lab up --rate 1gbit --delay-ms 5 --loss-pct 0.1
    """
    from . import api as lab

    lab.up(rate=rate, delay_ms=delay_ms, jitter_ms=jitter_ms, loss_pct=loss_pct, echo=click.echo)
    if tls:
        lab.check_tls(echo=click.echo)


@lab_group.command("down")
def down_cmd() -> None:
    """Tear the lab down and leave the machine as found.

    Destroys every domain on the lab's daemons, ends every process the lab
    started (by PID), removes the namespaces, bridge, veths and state.
    Does nothing (and says so) when the lab is already down.
    """
    from . import api as lab

    lab.down(echo=click.echo)


@lab_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(as_json: bool) -> None:
    """Show whether the lab is up, KVM or TCG, the link shaping, hosts and domains.

    \b
    Examples:
      migflow lab status
      migflow lab status --json | jq .hosts[0].uri
    """
    from . import api as lab

    st = lab.status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"lab: {'up' if st['up'] else 'down'}  accel: {st['accel']}  link: {lab.describe_link(st['link'])}")
    for h in st["hosts"]:
        state = f"libvirtd pid {h['libvirtd_pid']}" if h["running"] else "not running"
        doms = ", ".join(f"{d['name']} ({d['state']})" for d in h["domains"]) or "no domains"
        click.echo(f"  {h['name']:8} {h['address']:11} {h['uri']:30} {state}; {doms}")
        click.echo(f"  {'':8} {'':11} {h['tls_uri']}")


@lab_group.command("shape")
@_shaping_options
@click.option("--clear", is_flag=True, help="Remove all shaping.")
def shape_cmd(rate, delay_ms, jitter_ms, loss_pct, clear: bool) -> None:
    """Shape the link between the lab's hosts with tc, or clear it.

    Each host shapes its own egress, so both directions get the same rate,
    delay and loss (the round trip sees twice the delay).  The new shaping
    replaces the old one entirely.

    \b
    Examples:
      migflow lab shape --rate 1gbit
      migflow lab shape --rate 100mbit --delay-ms 10 --jitter-ms 2
      migflow lab shape --loss-pct 0.5
      migflow lab shape --clear
    """
    from . import api as lab

    values = (rate, delay_ms, jitter_ms, loss_pct)
    if clear and any(v is not None for v in values):
        raise UsageError("--clear cannot be combined with other shaping options")
    if not clear and all(v is None for v in values):
        raise UsageError("nothing to shape", hint="give --rate, --delay-ms, --jitter-ms or --loss-pct, or --clear")
    link = lab.shape(*values) if not clear else lab.shape()
    click.echo(f"lab: link {lab.describe_link(link)}")
