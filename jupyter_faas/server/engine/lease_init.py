"""An INIT that failed in an environment started for a map's lease: recorded on the map's item
that would have run there.

On the server's path a cold start is made for an invocation that waits for it, and an INIT that
fails fails that invocation (``INIT_START``, INIT's output, the error, the Init Duration:
:mod:`.init_phase`).  A map's lease request starts environments ahead of its items
(:meth:`~.leases.Leasing.grant_leases`), so none waits there: the failure is held under a token
sent with ``lease_failed`` (:mod:`..protocol.direct`), and the client sends the item that would
have run there next the server's way claiming it (``init_failure`` in its ``invoke`` frame), which
:meth:`LeaseInitFailures.claim_init_failure` ends exactly as the server's path ends the item that
waited.  With no item left to run there (the other leases took them all) the server's log has
it, as Lambda's log stream has an INIT that failed outside an invocation (``INIT_REPORT ...
Status: error``): that environment would not have been started on the server's path.

Mixed into :class:`~.leases.Leasing`.
"""

from __future__ import annotations

import logging
import secrets

from .invocation import Invocation
from .outcomes import failure as outcome_failure

log = logging.getLogger("jupyter_faas.server")

#: an INIT that failed in an environment started for a map's lease waits this long for the
#: map's item that would have run there (``claim_init_failure``)
INIT_FAILURE_HOLD_S = 60.0


class LeaseInitFailures:
    def _hold_init_failure(self, function: dict, env, failure) -> str:
        """Hold an INIT that failed in an environment started for a map's lease (see the module
        doc); the token the map's item claims it with.  Logged at once (the record when no item
        claims it)."""
        token = "init-" + secrets.token_hex(8)
        self._init_failures[token] = (function, env, failure, env.init_ms)
        self.clock.call_later(INIT_FAILURE_HOLD_S, self._init_failures.pop, token, None)
        error = outcome_failure(failure, function, "-", []).error or {}
        printed = "".join(f"\n  {stream}: {line}" for _, stream, line in getattr(failure, "init_output", ()) or ())
        log.warning("INIT_REPORT Init Duration: %.2f ms Phase: init Status: error Error Type: %s (%s "
                    "version %s, environment %s started for a leased map): %s%s",
                    env.init_ms or 0.0, error.get("errorType"), function["name"], function["version"],
                    env.id, error.get("errorMessage"), printed)
        return token

    def claim_init_failure(self, inv: Invocation, token: str) -> bool:
        """End ``inv`` (accepted, queued, not started) with the INIT failure ``token`` names, as
        the server's path ends the invocation that waited for a cold start whose INIT failed;
        False when there is none (unknown, already claimed, expired, another version)."""
        held = self._init_failures.get(token)
        if held is None or (held[0]["name"], held[0]["version"]) != (inv.function["name"], inv.function["version"]):
            return False
        del self._init_failures[token]
        _, env, failure, init_ms = held
        self.active[inv.request_id] = inv
        self.feed.invocation(inv)
        self._take_slot(inv)
        inv.env = env
        self._end_failure(inv, failure, init_ms)
        return True
