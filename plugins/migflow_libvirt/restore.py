"""What ``restore`` does, decided from what it finds: no libvirt here, so every case is testable.

``restore`` looks the domain up by UUID on both hosts and compares what it
sees with what ``prepare-domain`` recorded (``original``).  It decides in two
phases, because the first may move the domain:

1. :func:`first_move`: a domain the workflow created is removed wherever it
   is; a domain found on neither host is lost; a domain running (or paused)
   on the destination only is migrated back (resumed first when paused, since
   a paused domain cannot be live-migrated back here); a domain whose
   post-copy failed after the switch is left exactly where it is (its memory
   is split between the hosts); else nothing moves.
2. :func:`fixups`: the domain on the source is put back as it was found:
   resumed or paused again, shut off again, defined again (``undefinesource``
   removed its definition) or made transient again (``persistent`` gave it
   one), its migration settings restored when no leg completed (the source
   QEMU is still the one whose settings were changed); a stale inactive
   definition on the destination is removed.

A domain the workflow names (``created`` false) is never destroyed or
undefined here beyond what puts it back as found: "shut off again" applies
only to a domain that was shut off when the run began.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FirstMove", "Seen", "first_move", "fixups"]


@dataclass(frozen=True)
class Seen:
    """A domain as found on one host."""

    state: str  # running, paused, shutoff, ...
    active: bool
    persistent: bool
    postcopy_failed: bool = False  # libvirt's reason: post-copy failed after the switch (libvirt 8.5+)


@dataclass(frozen=True)
class FirstMove:
    """Phase 1: ``action`` is ``remove`` (with ``roles``), ``lost``, ``migrate-back``
    (``resume_first`` when paused on the destination), ``postcopy-failed`` (nothing
    may move: the guest's memory is split between the hosts) or ``none``."""

    action: str
    roles: tuple[str, ...] = ()
    resume_first: bool = False
    message: str = ""


def first_move(original: dict, where: dict[str, Seen | None], *, keep_created: bool = False) -> FirstMove:
    """Phase 1 from the original record and what each host has (``{"source": Seen | None, "destination": ...}``)."""
    name = f"{original.get('name')!r} ({original.get('uuid')})"
    here = {role: seen for role in ("source", "destination") if (seen := where.get(role)) is not None}
    found = tuple(here)
    if original.get("created") and not keep_created:
        if not found:
            return FirstMove("lost", message=f"the created domain {name} was found on neither host")
        return FirstMove("remove", roles=found)
    if not found:
        return FirstMove("lost", message=f"domain {name} runs on neither host: it was lost")
    split = [role for role, seen in here.items() if seen.postcopy_failed]
    if split:
        states = ", ".join(f"{role}: {seen.state}" for role, seen in here.items())
        return FirstMove(
            "postcopy-failed",
            roles=tuple(split),
            message=f"post-copy of domain {name} failed after the switch ({states}; libvirt's reason: post-copy failed): "
            "its memory is split between the hosts, so migflow moved, resumed and removed nothing",
        )
    src, dst = where.get("source"), where.get("destination")
    if dst is not None and dst.active and not (src is not None and src.active):
        return FirstMove("migrate-back", resume_first=dst.state == "paused")
    return FirstMove("none")


def fixups(original: dict, source: Seen | None, destination: Seen | None, *, any_leg_completed: bool, settings_changed: bool) -> list[str]:
    """Phase 2: what to do on the source (and with a stale destination definition), in order.

    Actions: ``resume``, ``suspend``, ``shut-off``, ``define``, ``make-transient``,
    ``restore-settings`` (on the source), ``undefine-destination``.
    """
    out: list[str] = []
    if source is not None:
        was = original.get("state")
        if source.state == "paused" and was == "running":
            out.append("resume")
        if source.state == "running" and was == "paused":
            out.append("suspend")
        if was == "shutoff" and source.active:
            out.append("shut-off")
        if original.get("persistent") and not source.persistent:
            out.append("define")
        if not original.get("persistent") and source.persistent and source.active:
            out.append("make-transient")
        if not any_leg_completed and settings_changed and source.active:
            out.append("restore-settings")
    if destination is not None and not destination.active and destination.persistent:
        out.append("undefine-destination")
    return out
