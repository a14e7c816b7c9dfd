"""``/faas/api/functions/{name}/provisioned-concurrency``: provisioned concurrency from Python.

``PUT`` ``{"count": n, "qualifier": "$LATEST" | "3" | "<alias>", "wait": seconds}`` keeps
``n`` environments of ``name:qualifier`` started and initialized (0 stops it), and answers
once they are up, could not start, or ``wait`` seconds passed (0: at once); ``GET`` lists
every config of the function.  Unlike Lambda's API (``compat/settings.py``), ``$LATEST``
may be provisioned here: it is what a notebook handle calls, and its environments follow
the newest version (``engine/provisioning.py``).
"""

from __future__ import annotations

import asyncio

from ...errors import InvalidParameter
from .errors import BaseHandler

#: the longest a PUT waits for its environments (Lambda's longest timeout)
MAX_WAIT_S = 900


class ProvisionedHandler(BaseHandler):
    def get(self, name):
        self.service.get_function(name)
        configs = [state for _, state in self.service.settings.provisioned_configs(name) if state]
        self.finish({"function": name, "configs": configs})

    async def put(self, name):
        body = self.json_body()
        unknown = set(body) - {"count", "qualifier", "wait", "check"}
        if unknown:
            raise InvalidParameter(f"unknown field(s) {', '.join(sorted(unknown))}: give count, "
                                   f"qualifier, wait (and check)")
        if "count" not in body:
            raise InvalidParameter("give 'count': how many environments to keep (0 stops it)")
        wait = body.get("wait", 0)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT_S:
            raise InvalidParameter(f"'wait' is seconds to wait for the environments, 0..{MAX_WAIT_S}; "
                                   f"got {wait!r}")
        qualifier = body.get("qualifier") or "$LATEST"
        if not isinstance(qualifier, str):
            raise InvalidParameter(f"'qualifier' is $LATEST, a published version or an alias; got {qualifier!r}")
        settings = self.service.settings
        check = body.get("check")
        if check is not None:  # only check, for a version about to be deployed (%%lambda)
            if not isinstance(check, dict) or set(check) - {"memory", "concurrency"}:
                raise InvalidParameter("'check' is {\"memory\": MB, \"concurrency\": N or null}")
            settings.check_provisioned(name, qualifier, body["count"], check.get("memory"),
                                       check.get("concurrency"))
            self.finish({"function": name, "qualifier": qualifier, "provisioned": None, "checked": True})
            return
        state = settings.set_provisioned(name, qualifier, body["count"])
        if state is not None and wait:
            try:
                state = await asyncio.wait_for(settings.wait_provisioned(name, qualifier), wait)
            except asyncio.TimeoutError:
                state = settings.provisioned(name, qualifier)
        self.finish({"function": name, "qualifier": qualifier, "provisioned": state})
