"""Reads of what the store keeps, for the API and the protocol (which never touch the store)."""

from __future__ import annotations

from ...errors import ResourceNotFound
from .. import model
from . import platform_lines
from ..model import InvocationRow


class StoredQueries:
    """Mixed into :class:`~.service.Service`; ``self.store`` is the injected store."""

    store = None
    registry = None

    def get_invocation(self, request_id: str) -> InvocationRow:
        self.fold_leases()  # what leased environments ran: stored before it is read
        row = self.store.get_invocation(request_id)
        if row is None:
            raise ResourceNotFound(f"no invocation with request id {request_id!r}; list the recorded ones "
                                   f"with faas.invocations()")
        return row

    def stored_invocation(self, request_id: str) -> InvocationRow | None:
        """The stored row (:class:`~..model.InvocationRow`), or None."""
        self.fold_leases()  # what leased environments ran: stored before it is read
        return self.store.get_invocation(request_id)

    def stored_result(self, request_id: str) -> bytes | None:
        """A finished invocation's result (or pickled exception) bytes, or None."""
        return self.store.get_result(request_id)

    def stored_result_buffers(self, request_id: str) -> dict | None:
        """The descriptor of the result's out-of-band buffers' file, or None."""
        return self.store.get_result_buffers(request_id)

    def list_invocations(self, **query) -> list[InvocationRow]:
        """Newest first; ``function``, ``status``, ``limit``, ``before``/``before_id`` (a keyset page)."""
        self.fold_leases()  # what leased environments ran: stored before it is read
        return self.store.list_invocations(**query)

    def invocation_logs(self, request_id: str, after: int = 0, limit: int = 10000) -> list[dict]:
        """Stored log lines of an invocation, ``after`` a line number, at most ``limit``."""
        self.fold_leases()  # what leased environments ran: stored before it is read
        return platform_lines.invocation_logs(self.store, request_id, after, limit)

    def function_logs(self, name: str, limit: int = 200) -> list[dict]:
        """The newest stored log lines of a function's invocations, deleted or not; raises
        ResourceNotFound for a name never deployed."""
        self.fold_leases()  # what leased environments ran: stored before it is read
        self.registry.require_known(name)
        return platform_lines.function_logs(self.store, name, limit)


    def stored_report(self, row: InvocationRow) -> dict | None:
        """A stored invocation's REPORT figures, its cost at this server's prices."""
        return model.stored_report(row, self.pricing)
