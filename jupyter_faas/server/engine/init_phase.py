"""The log of a cold start whose INIT failed: ``INIT_START`` and what INIT printed, then the error.

A successful cold start logs ``INIT_START``, INIT's output, then ``START`` (``Service._dispatch``).
A failed one never reaches ``_dispatch``: its outcome (``phase == "init"``, see
:class:`~..backends.base.Outcome`) carries INIT's output, and this mixin logs the same lines
before the error, so an INIT that raised, ran over the INIT limit or over the memory limit
shows what it printed, in Lambda's order.

Mixed in ahead of :class:`~.service.Service` (``AsyncService``, what the server runs, takes
it first): it overrides ``Service._end_failure`` and then calls it.
"""

from __future__ import annotations

from .outcomes import init_lines


class InitPhaseLogs:
    def _end_failure(self, inv, outcome, init_ms) -> None:
        if getattr(outcome, "phase", "invoke") == "init":
            for stream, line in init_lines(inv.function, init_ms or 0.0, outcome.init_output):
                self._log(inv, stream, line)
        super()._end_failure(inv, outcome, init_ms)
