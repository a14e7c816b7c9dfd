"""Settings a function keeps per qualifier: event-invoke configs and provisioned concurrency.

**Event-invoke config** (what an asynchronous invocation of ``name:qualifier`` does on
failure): ``{"MaximumRetryAttempts": 0..2, "MaximumEventAgeInSeconds": 60..21600,
"DestinationConfig": {"OnSuccess": {"Destination": arn}, "OnFailure": {...}}}``, stored in
Lambda's own keys, as the Lambda API answers it.  The async queue
(:mod:`.async_queue`) keeps one policy per function: the Lambda API writes ``$LATEST``'s
config through to it (``put_event_config``); a version's or an alias's is stored and
answered, and the function's policy applies to its events.

**Provisioned concurrency** for a published version or an alias: the backend keeps that
many environments of the version started and initialized (:meth:`Backend.provision`), so
the first calls are warm.  An alias with an additional weighted version splits the count by
weight.  Kept in the store, and provisioned again when the server starts (:meth:`restore`).
"""

from __future__ import annotations

import logging

from ...errors import InvalidParameter
from ..model import LATEST

log = logging.getLogger("jupyter_faas.server")

EVENT_INVOKE = "event_invoke"
PROVISIONED = "provisioned"


class FunctionSettings:
    def __init__(self, store, versions, registry, backend, code_for=None):
        self.store = store
        self.versions = versions
        self.registry = registry
        self.backend = backend
        # what an environment loads (a notebook function's layers wrapped around its pickle)
        self.code_for = code_for or registry.code
        self._kept: dict[str, dict] = {}  # function -> {Lambda version: function dict} provisioned

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

    # ---- provisioned concurrency ---------------------------------------------------------

    def put_provisioned(self, name: str, qualifier: str, count: int) -> dict:
        if qualifier in (None, "", LATEST):
            raise InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished "
                                   "function versions: give a published version or an alias")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidParameter(f"ProvisionedConcurrentExecutions must be at least 1; got {count!r}")
        self.versions.get(name, qualifier)
        self.store.put_setting(name, qualifier, PROVISIONED, {"requested": count})
        self.sync(name)
        return self.provisioned(name, qualifier)

    def provisioned(self, name: str, qualifier: str) -> dict | None:
        """``{requested, allocated, status, reason, updated_at}`` or None."""
        found = self.store.setting(name, qualifier, PROVISIONED)
        if found is None:
            return None
        allocated, failures = 0, []
        for function, _ in self._split(name, qualifier, found["requested"]):
            allocated += self.backend.provisioned(function)
            failure = self.backend.provision_failure(function)
            if failure:
                failures.append(failure)
        allocated = min(allocated, found["requested"])  # a version another qualifier provisions too
        status = "FAILED" if failures else "READY" if allocated >= found["requested"] else "IN_PROGRESS"
        return {"requested": found["requested"], "allocated": allocated, "status": status,
                "reason": "; ".join(failures) or None, "updated_at": found["updated_at"]}

    def provisioned_configs(self, name: str) -> list[tuple[str, dict]]:
        """``(qualifier, state)`` of every provisioned-concurrency config of ``name``."""
        return [(s["qualifier"], self.provisioned(name, s["qualifier"]))
                for s in self.store.settings(PROVISIONED, name)]

    def delete_provisioned(self, name: str, qualifier: str) -> bool:
        gone = self.store.delete_setting(name, qualifier, PROVISIONED)
        self.sync(name)
        return gone

    def restore(self) -> None:
        """Provision again what the store says (after a restart)."""
        for name in sorted({s["function"] for s in self.store.settings(PROVISIONED)}):
            try:
                self.sync(name)
            except Exception as exc:  # noqa: BLE001 - one stale setting must not stop the server
                log.warning("could not provision %s again: %s", name, exc)

    def sync(self, name: str) -> None:
        """Tell the backend how many environments to keep for each version of ``name``: the sum
        over its provisioned qualifiers (an alias counts for the versions it runs now, so call
        this after an alias moves), and none for a version no longer wanted."""
        totals: dict[str, tuple] = {}
        for setting in self.store.settings(PROVISIONED, name):
            for function, share in self._split(name, setting["qualifier"], setting["requested"]):
                _, count = totals.get(function["lambda_version"], (function, 0))
                totals[function["lambda_version"]] = (function, count + share)
        for version, function in self._kept.pop(name, {}).items():
            if version not in totals:
                self.backend.provision(function, 0, self.code_for)
        for function, count in totals.values():
            self.backend.provision(function, count, self.code_for)
        if totals:
            self._kept[name] = {version: function for version, (function, _) in totals.items()}

    def _split(self, name: str, qualifier: str, count: int) -> list[tuple[dict, int]]:
        """The versions ``qualifier`` runs and each one's share of ``count`` (an alias: by weight)."""
        if qualifier.isdigit():
            return [(self.versions.get(name, qualifier), count)]
        alias = self.versions.alias(name, qualifier)
        out, left = [], count
        for extra, weight in alias["weights"].items():
            share = round(count * weight)
            out.append((self.versions.get(name, extra), share))
            left -= share
        out.insert(0, (self.versions.get(name, alias["version"]), max(left, 0)))
        return out
