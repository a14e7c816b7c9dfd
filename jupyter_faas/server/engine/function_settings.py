"""Settings a function keeps per qualifier: event-invoke configs and provisioned concurrency.

**Event-invoke config** (what an asynchronous invocation of ``name:qualifier`` does on
failure): ``{"MaximumRetryAttempts": 0..2, "MaximumEventAgeInSeconds": 60..21600,
"DestinationConfig": {"OnSuccess": {"Destination": arn}, "OnFailure": {...}}}``, stored in
Lambda's own keys, as the Lambda API answers it.  The async queue
(:mod:`.async_queue`) keeps one policy per function: the Lambda API writes ``$LATEST``'s
config through to it (``put_event_config``); a version's or an alias's is stored and
answered, and the function's policy applies to its events.

**Provisioned concurrency** (of a published version, an alias, or ``$LATEST`` from a
notebook): :mod:`.provisioning`, mixed in.
"""

from __future__ import annotations

from ...errors import InvalidParameter
from ..model import LATEST
from .provisioning import PROVISIONED, Provisioning

EVENT_INVOKE = "event_invoke"
__all__ = ["EVENT_INVOKE", "PROVISIONED", "FunctionSettings"]


class FunctionSettings(Provisioning):
    def __init__(self, store, versions, registry, backend, code_for=None, slots=None):
        self.store = store
        self.versions = versions
        self.registry = registry
        self.backend = backend
        # what an environment loads (a notebook function's layers wrapped around its pickle)
        self.code_for = code_for or registry.code
        self.slots = slots  # the server's limits (admission.Slots), checked by provisioning
        self._provisioning_init()

    # ---- event-invoke configs ------------------------------------------------------------

    def put_event_invoke_config(self, name: str, qualifier: str, config: dict) -> dict:
        """Store ``config`` for ``name:qualifier``, replacing what was there."""
        self.versions.get(name, qualifier)  # the qualifier must exist
        qualifier = qualifier or LATEST
        config = {k: v for k, v in config.items() if v is not None}
        retries = config.get("MaximumRetryAttempts")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                    or not 0 <= retries <= 2):
            raise InvalidParameter(f"MaximumRetryAttempts must be between 0 and 2; got {retries!r}")
        age = config.get("MaximumEventAgeInSeconds")
        if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 60 <= age <= 21600):
            raise InvalidParameter(f"MaximumEventAgeInSeconds must be between 60 and 21600; got {age!r}")
        destinations = config.get("DestinationConfig")
        if destinations is not None:
            if not isinstance(destinations, dict) or set(destinations) - {"OnSuccess", "OnFailure"}:
                raise InvalidParameter("DestinationConfig has OnSuccess and OnFailure only")
            for when, target in destinations.items():
                if not isinstance(target, dict) or not isinstance(target.get("Destination", ""), str):
                    raise InvalidParameter(f"DestinationConfig.{when} must be {{'Destination': '<arn>'}}")
        updated = self.store.put_setting(name, qualifier, EVENT_INVOKE, config)
        return dict(config, updated_at=updated, qualifier=qualifier)

    def event_invoke_config(self, name: str, qualifier: str | None = None) -> dict | None:
        """The stored config of ``name:qualifier`` (None: none was put; Lambda's defaults apply)."""
        found = self.store.setting(name, qualifier or LATEST, EVENT_INVOKE)
        return None if found is None else dict(found, qualifier=qualifier or LATEST)

    def event_invoke_configs(self, name: str) -> list[dict]:
        self.registry.get(name)
        return self.store.settings(EVENT_INVOKE, name)

    def delete_event_invoke_config(self, name: str, qualifier: str | None) -> bool:
        return self.store.delete_setting(name, qualifier or LATEST, EVENT_INVOKE)
