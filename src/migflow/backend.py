"""The interface a hypervisor backend implements.

The five built-in steps (``prepare-domain``, ``set-capabilities``, ``migrate``,
``collect-qmp``, ``restore``) are backend-agnostic: they call these methods on
``ctx.backend``.  A backend is contributed with
:func:`~migflow.hookspecs.migflow_register_backends`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .legs import Leg

if TYPE_CHECKING:
    from .plugins import Plugins
    from .reservation import Holder, Reservation

__all__ = ["DEFAULT_TIMEOUT_ACTION", "Backend"]

#: what a migrate step's timeout does unless it says: like ``virsh migrate --timeout``, suspend the guest
DEFAULT_TIMEOUT_ACTION = "suspend"


class Backend:
    """Base class for backends.  Methods raise :class:`migflow.errors.StepError` on failure."""

    name = "base"

    def __init__(self, source_uri: str, destination_uri: str):
        self.source_uri = source_uri
        self.destination_uri = destination_uri
        #: the run's plugins (set by :meth:`migflow.plugins.Plugins.make_backend`
        #: before :meth:`open`): a backend asks other plugins through ``self.plugins.hook``
        self.plugins: Plugins | None = None

    # -- lifecycle ---------------------------------------------------------
    def open(self) -> None:
        """Connect to both hosts."""

    def close(self) -> None:
        """Release connections.  Must not raise."""

    def reserve(self, holder: Holder) -> Reservation | None:
        """Reserve both hosts for the workflow ``holder`` runs (:mod:`migflow.reservation`).

        Raise :class:`~migflow.reservation.HostBusy` naming the holder when
        another live run has one of them.  None: this backend cannot reserve.
        """
        return None

    def host_info(self) -> dict:
        """``{"source": {...versions}, "destination": {...}}`` (libvirt, hypervisor, kernel)."""
        return {}

    # -- steps ---------------------------------------------------------------
    def prepare_domain(self, ctx: Any, domain: dict, options: dict) -> dict:
        """Find or create the domain on the source, wait until it runs.

        Returns the domain's recorded configuration (no secrets), and stores in
        ``ctx.state["original"]`` what restore needs.
        """
        raise NotImplementedError

    def set_capabilities(self, ctx: Any, capabilities: dict, parameters: dict) -> dict:
        """Apply migration capabilities/parameters; return what is really in force."""
        raise NotImplementedError

    def migrate(self, ctx: Any, leg: Leg, mode: Any, options: dict) -> None:
        """Run one leg; return when it ended.  Set ``leg.final_stats`` when known.

        Raise :class:`~migflow.errors.StepError` with the hypervisor's message on failure.
        """
        raise NotImplementedError

    def abort(self, leg: Leg) -> None:
        """Abort the running job of ``leg`` (Ctrl-C, timeouts).  Best effort."""

    def poll(self, leg: Leg) -> dict | None:
        """Current statistics of a running leg, QMP-shaped, or None when unavailable."""
        return None

    def locate(self, uuid: str) -> dict:
        """Where the domain is now: ``{"source": state or None, "destination": state or None}``.

        ``state`` is the domain's state name (``running``, ``paused`` ...);
        ``"unknown (host unreachable)"`` when a host cannot be asked.
        """
        raise NotImplementedError

    def restore(self, ctx: Any, options: dict) -> dict:
        """Put the domain back as found (after success or failure); return the end state.

        Return ``{"lost": True, "message": ...}`` when the domain runs on neither host.
        """
        raise NotImplementedError
