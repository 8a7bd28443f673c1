"""Runs a dead migflow process left behind: find them, say where their domain is, put it back.

* :func:`reconcile` runs at the start of ``migflow run`` (and ``migflow
  recover``): a spooled run still marked ``running`` whose process is gone is
  recorded ``abandoned``, with where its domain is now and in what state
  (looked up by UUID on both hosts).
* :func:`recover` (``migflow recover``) puts the domains of runs that did not
  finish their ``restore`` back into their recorded original state, using the
  backend's own restore, and says what it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import HostError, MigflowError

__all__ = ["Recovery", "reconcile", "recover"]


def _uris(run: dict, hosts) -> tuple[str, str] | None:
    """Usable URIs for a recorded run: its own unless redacted; else the current hosts when they match."""
    from .redact import redact_uri

    src, dst = run.get("source_uri"), run.get("destination_uri")
    if not src or not dst:
        return None
    if hosts is not None and {redact_uri(hosts.source), redact_uri(hosts.destination)} == {src, dst}:
        return (hosts.source, hosts.destination) if redact_uri(hosts.source) == src else (hosts.destination, hosts.source)
    if "***" in src or "***" in dst:
        return None  # secrets were redacted: cannot reconnect without the user's URIs
    return src, dst


def _domain(run: dict) -> dict | None:
    dom = run.get("domain")
    if isinstance(dom, str):
        try:
            dom = json.loads(dom)
        except ValueError:
            return None
    return dom if isinstance(dom, dict) and dom.get("uuid") else None


def _describe(where: dict) -> str:
    found = [f"{state} on the {role}" for role, state in where.items() if state]
    return " and ".join(found) if found else "on neither host (lost)"


def _open_backend(plugins, run: dict, uris):
    backend = plugins.make_backend(run.get("backend") or "libvirt", *uris)
    backend.open()
    return backend


def reconcile(results: str, plugins, hosts=None, echo: Callable[[str], None] = print) -> list[dict]:
    """Mark spooled runs of dead processes ``abandoned`` with their domain's whereabouts.

    Returns one dict per reconciled run.  Never raises for unreachable hosts:
    the run is still marked, with "domain location unknown" and the reason.
    """
    from .records.abandoned import abandon, owner_is_dead
    from .records.spool import list_spools, read_spool, write_spool

    done = []
    for path in list_spools(results):
        try:
            data = read_spool(path)
        except (OSError, ValueError):
            continue
        run = data.get("run", {})
        if not owner_is_dead(data):
            continue
        dom = _domain(run)
        note = f"migflow process {run.get('pid')} ended while the run was in progress"
        info: dict[str, Any] = {"dead_pid": run.get("pid")}
        uris = _uris(run, hosts)
        if dom is None:
            note += "; no domain had been prepared yet"
        elif uris is None:
            note += (
                f"; domain {dom.get('name')} ({dom['uuid']}): location unknown (the recorded host URIs were redacted; run migflow recover --src URI --dst URI)"
            )
        else:
            try:
                backend = _open_backend(plugins, run, uris)
                try:
                    where = backend.locate(dom["uuid"])
                finally:
                    backend.close()
                info["domain_now"] = where
                note += f"; domain {dom.get('name')} ({dom['uuid']}) is now {_describe(where)}"
            except MigflowError as exc:
                note += f"; domain {dom.get('name')} ({dom['uuid']}): location unknown ({exc.message})"
        abandon(data, note, data.get("flushed_at"))
        extra = run.get("extra") if isinstance(run.get("extra"), dict) else {}
        extra["reconciled"] = info
        run["extra"] = extra
        write_spool(path, data)
        echo(f"found run {run.get('run_id')} left by a dead migflow process: {note}")
        done.append({"run_id": run.get("run_id"), "error": note, **info})
    return done


@dataclass
class Recovery:
    run_id: str
    domain: str
    actions: list[str] = field(default_factory=list)
    end: dict = field(default_factory=dict)
    error: str | None = None


class _RecoverContext:
    """What a backend's ``restore`` needs, rebuilt from a recorded run."""

    def __init__(self, run_id: str, domain: dict, hosts, echo):
        self.run_id = run_id
        self.state = {"domain": dict(domain, host="unknown"), "original": dict(domain)}
        self.legs: list = []
        self.hosts = hosts
        self.echo = echo


def recover(results: str, plugins, hosts=None, run_ids=(), dry_run: bool = False, echo: Callable[[str], None] = print) -> list[Recovery]:
    """Put back the domains of runs whose ``restore`` did not complete."""
    from .records import ingest_pending, open_readonly, set_run_extra
    from .registry import HostPair

    reconcile(results, plugins, hosts, echo)
    ingest_pending(results, wait_s=5.0)
    con = open_readonly(results)
    try:
        rows = con.execute(
            """
            SELECT r.run_id, r.backend, r.source_uri, r.destination_uri, r.domain, r.extra
            FROM runs r
            WHERE r.domain IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.run_id AND s.step = 'restore' AND s.status = 'completed')
              AND coalesce(json_extract(r.extra, '$.recovered'), 'null') = 'null'
            ORDER BY r.started_at
            """
        ).fetchall()
    finally:
        con.close()
    out = []
    for run_id, backend_name, src, dst, domain, _extra in rows:
        if run_ids and run_id not in run_ids:
            continue
        run = {"run_id": run_id, "backend": backend_name, "source_uri": src, "destination_uri": dst, "domain": domain}
        dom = _domain(run)
        if dom is None:
            continue
        rec = Recovery(run_id, f"{dom.get('name')} ({dom['uuid']})")
        uris = _uris(run, hosts)
        if uris is None:
            rec.error = "the recorded host URIs were redacted: give --src URI --dst URI"
            out.append(rec)
            continue
        try:
            backend = _open_backend(plugins, run, uris)
        except MigflowError as exc:
            rec.error = exc.message
            out.append(rec)
            continue
        try:
            where = backend.locate(dom["uuid"])
            rec.end = where
            if dom.get("created") and not any(where.values()):
                rec.actions.append("nothing to do: the domain the workflow created is gone")
            elif dry_run:
                rec.actions.append(f"would restore: domain is {_describe(where)}")
            else:
                ctx = _RecoverContext(run_id, dom, HostPair(*uris), echo)
                result = backend.restore(ctx, {})
                rec.actions = list(result.get("actions", []))
                rec.end = result.get("end", result.get("found", {}))
                if result.get("lost"):
                    rec.error = result.get("message")
                set_run_extra(results, run_id, {"recovered": {"actions": rec.actions, "end": rec.end, "error": rec.error}})
        except (MigflowError, HostError) as exc:
            rec.error = exc.message
        except Exception as exc:  # a backend error must not stop the other recoveries
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            backend.close()
        out.append(rec)
    return out
