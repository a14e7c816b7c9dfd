"""``f.provision(n)``: provisioned concurrency for a handle (``RemoteFunction.provision``).

A notebook handle calls the function's engine version as ``$LATEST``; provisioning it
keeps ``n`` environments of ``$LATEST`` started and initialized, following it to each new
version (the server's ``engine/provisioning.py``).  A ``faas.lookup("f:3")`` or
``faas.lookup("f:live")`` handle provisions its published version or alias, as Lambda's
PutProvisionedConcurrencyConfig does.  Through ``PUT /faas/api/functions/{name}/
provisioned-concurrency``.
"""

from __future__ import annotations

import urllib.parse

from .. import errors

#: what the HTTP request allows beyond the server's wait (the reply, a slow loop)
_SLACK_S = 30.0


def _path(name: str) -> str:
    return f"/faas/api/functions/{urllib.parse.quote(name, safe='')}/provisioned-concurrency"


def check(n, wait) -> None:
    """Raise InvalidParameter for a bad ``n`` or ``wait`` (before anything is deployed)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise errors.InvalidParameter(f"provision(n): n is how many environments to keep started, a "
                                      f"whole number >= 0 (0 stops provisioning); got {n!r}")
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 900:
        raise errors.InvalidParameter(f"provision(wait=...) is seconds to wait for the environments, "
                                      f"0..900 (0: return at once); got {wait!r}")


def provision(conn, name: str, qualifier: str, n, wait) -> dict | None:
    """Ask the server for ``n`` environments of ``name:qualifier``; see ``RemoteFunction.provision``."""
    check(n, wait)
    reply = conn.request("PUT", _path(name), {"count": n, "qualifier": qualifier, "wait": wait},
                         timeout=wait + _SLACK_S)
    state = reply["provisioned"]
    if state is None:
        return None
    which = f"{name}:{qualifier} (engine version {', '.join(map(str, state['versions']))})"
    if state["status"] == "FAILED":
        raise errors.FunctionError(
            f"provisioned concurrency of {which} FAILED: {state['reason']}. Its environments cannot "
            f"start (INIT fails, or its backend cannot keep them); fix that and call provision({n}) "
            f"again, or provision(0) to stop trying.", remote_type=state["reason"].split(":")[0])
    if wait and state["status"] != "READY":
        raise errors.ServerError(
            f"provisioned concurrency of {which}: {state['allocated']} of {n} environments were up "
            f"after {wait:g} s; the rest keep starting in the background. Call provision({n}, "
            f"wait=...) again to wait longer, or read provisioned() to follow them.")
    return state


def check_before_deploy(conn, name: str, n: int, memory: int | None, concurrency: int | None) -> None:
    """Raise InvalidParameter if ``n`` environments of ``$LATEST`` would be refused once ``name`` is
    deployed with this ``memory`` and reserved ``concurrency`` (the server's limits and the
    function's other provisioned qualifiers counted); keeps nothing (``%%lambda`` asks first)."""
    conn.request("PUT", _path(name), {"count": n, "qualifier": "$LATEST",
                                      "check": {"memory": memory, "concurrency": concurrency}})


def provisioned(conn, name: str, qualifier: str) -> dict | None:
    """The state of ``name:qualifier``'s provisioned concurrency, or None if it has none."""
    configs = conn.request("GET", _path(name))["configs"]
    return next((c for c in configs if c["qualifier"] == qualifier), None)
