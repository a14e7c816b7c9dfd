"""Provisioned concurrency: environments of a version kept started and initialized.

Lambda keeps ``n`` environments of a published version or an alias initialized and
ready (``PutProvisionedConcurrencyConfig``), so the first calls are warm.  Here the
count is a per-qualifier setting in the store, and the backend keeps the environments
(:meth:`~..backends.base.Backend.provision`)::

    set_provisioned(name, qualifier, n) ─► setting in the store ─► sync(name)
        ─► per engine version: the sum over the qualifiers that run it ─► backend.provision

Qualifiers:

- a published version ``"3"``: its engine version, for good;
- an alias: the versions it runs now, the count split by its weights (``sync`` again
  when it moves);
- ``$LATEST``, which Lambda refuses (and so does the Lambda API here) but a notebook
  handle calls: the function's newest engine version, *following it*: every deploy
  syncs, so a new version gets the environments and the old one's stop (idle ones at once,
  busy ones when they finish).  ``f.provision(n)`` and ``%%lambda --provisioned N`` set this one.

Limits (checked before anything is kept): the function's reserved concurrency caps the
sum over its qualifiers (Lambda's rule); the server's ``max_concurrency`` caps the sum
over every function, and its memory budget the memory they hold (provisioned
environments hold their memory while idle).  A backend without provisioned concurrency
(Dask) refuses, and nothing is kept.  Kept across restarts (:meth:`restore`).
"""

from __future__ import annotations

import logging

from ... import limits
from ...errors import FaaSError, InvalidParameter
from ..model import LATEST

log = logging.getLogger("jupyter_faas.server")

PROVISIONED = "provisioned"


def check_reserved(store, name: str, reserved: int | None) -> None:
    """Refuse a reserved concurrency for ``name`` below what its qualifiers have provisioned
    (Lambda's rule: provisioned concurrency counts against reserved).  Called by the
    registry before a version is stored, so a refused deploy keeps nothing."""
    if reserved is None:
        return
    configs = store.settings(PROVISIONED, name)
    total = sum(s["requested"] for s in configs)
    if total > reserved:
        where = ", ".join(f"{s['requested']} on {s['qualifier']}" for s in configs)
        raise InvalidParameter(
            f"reserved concurrency {reserved} for {name} is below its provisioned concurrency "
            f"({total} environments: {where}), which counts against it: give a reserved concurrency "
            f"of at least {total}, or lower the provisioned concurrency first (f.provision(n) or "
            f"%%lambda --provisioned N; DeleteProvisionedConcurrencyConfig)")


class Provisioning:
    """Mixed into :class:`.function_settings.FunctionSettings` (``store``, ``versions``,
    ``registry``, ``backend``, ``code_for``, ``slots``)."""

    store = versions = registry = backend = code_for = slots = None

    def _provisioning_init(self) -> None:
        self._kept: dict[str, dict] = {}    # function -> {Lambda version: function dict} provisioned
        self._sync_errors: dict[str, str] = {}  # function -> why its environments cannot be kept

    # ---- set, read, delete -----------------------------------------------------------------

    def put_provisioned(self, name: str, qualifier: str, count: int) -> dict:
        """Lambda's PutProvisionedConcurrencyConfig: a published version or an alias, n >= 1."""
        if qualifier in (None, "", LATEST):
            raise InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished "
                                   "function versions: give a published version or an alias")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidParameter(f"ProvisionedConcurrentExecutions must be at least 1; got {count!r}")
        return self.set_provisioned(name, qualifier, count)

    def set_provisioned(self, name: str, qualifier: str | None, count: int) -> dict | None:
        """Keep ``count`` environments of ``name:qualifier`` (``$LATEST`` too: it follows the
        newest version); 0 stops keeping them (returns None).  Returns :meth:`provisioned`.
        Raises InvalidParameter (a bad count, over a limit, a backend without it) or
        ResourceNotFound; nothing is kept then."""
        qualifier = qualifier or LATEST
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidParameter(f"provisioned concurrency is a whole number of environments, 0 or "
                                   f"more (0 stops it); got {count!r}")
        function = self.versions.get(name, qualifier)
        if count == 0:
            self.delete_provisioned(name, qualifier)
            return None
        self._check_limits(name, qualifier, function, count)
        previous = self.store.setting(name, qualifier, PROVISIONED)
        self.store.put_setting(name, qualifier, PROVISIONED, {"requested": count})
        try:
            self.sync(name, strict=True)
        except FaaSError:
            if previous is None:
                self.store.delete_setting(name, qualifier, PROVISIONED)
            else:
                self.store.put_setting(name, qualifier, PROVISIONED,
                                       {k: previous[k] for k in ("requested", "failed") if k in previous})
            self.sync(name)
            raise
        return self.provisioned(name, qualifier)

    def check_provisioned(self, name: str, qualifier: str | None, count: int, memory: int | None,
                          concurrency: int | None) -> None:
        """Raise InvalidParameter if :meth:`set_provisioned` would refuse ``count`` for a version
        of ``name`` with this ``memory`` and reserved ``concurrency`` (about to be deployed: it
        need not exist yet).  Keeps nothing."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidParameter(f"provisioned concurrency is a whole number of environments, 0 or "
                                   f"more (0 stops it); got {count!r}")
        if count:
            function = {"memory": limits.MEMORY_DEFAULT_MB if memory is None else memory,
                        "concurrency": concurrency}
            self._check_limits(name, qualifier or LATEST, function, count)

    def provisioned(self, name: str, qualifier: str) -> dict | None:
        """``{qualifier, requested, allocated, in_use, status, reason, updated_at, versions,
        environments}`` or None.  ``allocated``: environments up (INIT done); ``in_use``: of
        them, running an invocation now; ``status``: IN_PROGRESS | READY | FAILED (``reason``
        says why); ``versions``: the engine versions they are of; ``environments``: their ids."""
        found = self.store.setting(name, qualifier, PROVISIONED)
        if found is None:
            return None
        envs, failures, versions = [], [], []
        for function, _ in self._split(name, qualifier, found["requested"]):
            versions.append(function["version"])
            envs += self.backend.provisioned_environments(function)
            failure = self.backend.provision_failure(function)
            if failure and failure not in failures:
                failures.append(failure)
        if found.get("failed") and found["failed"] not in failures:
            failures.append(found["failed"])  # kept FAILED (across restarts) until it is changed
        if name in self._sync_errors:
            failures.append(self._sync_errors[name])
        requested = found["requested"]
        allocated = min(len(envs), requested)  # a version another qualifier provisions too
        in_use = min(sum(1 for e in envs if e["busy"]), allocated)
        status = "FAILED" if failures else "READY" if allocated >= requested else "IN_PROGRESS"
        return {"qualifier": qualifier, "requested": requested, "allocated": allocated,
                "in_use": in_use, "status": status, "reason": "; ".join(failures) or None,
                "updated_at": found["updated_at"], "versions": versions,
                "environments": [e["id"] for e in envs]}

    def summary(self) -> list[dict]:
        """Every function's provisioned-concurrency configs, for ``/faas/api/status``:
        ``{function, qualifier, requested, allocated, in_use, status, reason}``."""
        out = []
        for s in self.store.settings(PROVISIONED):
            try:
                state = self.provisioned(s["function"], s["qualifier"])
            except FaaSError as exc:  # its version or alias went
                state = {"requested": s["requested"], "allocated": 0, "in_use": 0,
                         "status": "FAILED", "reason": str(exc)}
            if state is not None:
                out.append({"function": s["function"], "qualifier": s["qualifier"],
                            **{k: state[k] for k in ("requested", "allocated", "in_use", "status",
                                                     "reason")}})
        return out

    def provisioned_configs(self, name: str) -> list[tuple[str, dict]]:
        """``(qualifier, state)`` of every provisioned-concurrency config of ``name``."""
        return [(s["qualifier"], self.provisioned(name, s["qualifier"]))
                for s in self.store.settings(PROVISIONED, name)]

    def delete_provisioned(self, name: str, qualifier: str) -> bool:
        gone = self.store.delete_setting(name, qualifier, PROVISIONED)
        self.sync(name)
        return gone

    async def wait_provisioned(self, name: str, qualifier: str | None) -> dict | None:
        """:meth:`provisioned` once every environment asked for is up, or could not start;
        the caller bounds the wait (``asyncio.wait_for``)."""
        qualifier = qualifier or LATEST
        if self.store.setting(name, qualifier, PROVISIONED) is not None:
            for function, _ in self._split(name, qualifier, 1):
                await self.backend.wait_provisioned(function)
        return self.provisioned(name, qualifier)

    def environments(self, function: dict) -> dict:
        """What the panel shows of a function's environments: ``provisioned`` (:meth:`provisioned`
        per qualifier) and ``snapshot`` (of its newest version; see
        :meth:`~..backends.base.Backend.snapshot_state`; None: no snapshots asked)."""
        name = function["name"]
        return {"provisioned": [state for _, state in self.provisioned_configs(name) if state],
                "snapshot": self.backend.snapshot_state(dict(function, lambda_version=LATEST))}

    # ---- keeping the backend in step -------------------------------------------------------

    def deployed(self, name: str) -> None:
        """``name`` was deployed: ``$LATEST`` (and an alias on it) may run another version now."""
        settings = self.store.settings(PROVISIONED, name)
        for setting in settings:
            if setting["qualifier"] == LATEST and setting.get("failed"):
                # $LATEST runs new code now: its config is changed, so it is tried again
                self.store.put_setting(name, LATEST, PROVISIONED, {"requested": setting["requested"]})
        if settings:
            self.sync(name)

    def environments_changed(self, name: str) -> None:
        """A provisioned environment of ``name`` came up or failed (the backend says so): a
        config whose environments failed their INIT is kept ``FAILED`` in the store, as Lambda
        keeps it until the config changes, so a restart does not try it again (nor log it)."""
        for setting in self.store.settings(PROVISIONED, name):
            if setting.get("failed"):
                continue
            try:
                failure = next((f for f in (self.backend.provision_failure(function) for function, _
                                            in self._split(name, setting["qualifier"], 1)) if f), None)
            except FaaSError:
                continue
            if failure:
                self.store.put_setting(name, setting["qualifier"], PROVISIONED,
                                       {"requested": setting["requested"], "failed": failure})

    def restore(self) -> None:
        """Provision again what the store says (after a restart)."""
        settings = self.store.settings(PROVISIONED)
        failed = [f"{s['function']}:{s['qualifier']}" for s in settings if s.get("failed")]
        if failed:
            log.info("provisioned concurrency of %s stays FAILED (not tried again until it is "
                     "changed: provision(n), a new deploy of $LATEST, or provision(0))", ", ".join(failed))
        for name in sorted({s["function"] for s in settings if not s.get("failed")}):
            try:
                self.sync(name)
            except Exception as exc:  # noqa: BLE001 - one stale setting must not stop the server
                log.warning("could not provision %s again: %s", name, exc)

    def sync(self, name: str, strict: bool = False) -> None:
        """Tell the backend how many environments to keep for each version of ``name``: the sum
        over its provisioned qualifiers (an alias counts for the versions it runs now, so call
        this after an alias moves), and none for a version no longer wanted.  A failure is kept
        as the configs' ``reason`` and logged; ``strict``: raised too."""
        try:
            totals: dict[str, tuple] = {}
            for setting in self.store.settings(PROVISIONED, name):
                if setting.get("failed"):
                    continue  # FAILED until changed: its environments are not tried again
                for function, share in self._split(name, setting["qualifier"], setting["requested"]):
                    key = (function["version"], function["lambda_version"])
                    _, count = totals.get(key, (function, 0))
                    totals[key] = (function, count + share)
            for function, count in totals.values():
                self.backend.provision(function, count, self.code_for)
        except FaaSError as exc:
            self._sync_errors[name] = str(exc)
            log.warning("could not provision %s: %s", name, exc)
            if strict:
                raise
            return
        self._sync_errors.pop(name, None)
        for key, function in self._kept.pop(name, {}).items():
            if key not in totals:
                self.backend.provision(function, 0, self.code_for)
        if totals:
            self._kept[name] = {key: function for key, (function, _) in totals.items()}

    def _split(self, name: str, qualifier: str, count: int) -> list[tuple[dict, int]]:
        """The versions ``qualifier`` runs and each one's share of ``count`` (an alias: by weight)."""
        if qualifier == LATEST or qualifier.isdigit():
            return [(self.versions.get(name, qualifier), count)]
        alias = self.versions.alias(name, qualifier)
        out, left = [], count
        for extra, weight in alias["weights"].items():
            share = round(count * weight)
            out.append((self.versions.get(name, extra), share))
            left -= share
        out.insert(0, (self.versions.get(name, alias["version"]), max(left, 0)))
        return out

    def _failed(self, setting: dict) -> bool:
        """Whether a config is FAILED (kept so, or its environments failed their INIT now)."""
        if setting.get("failed"):
            return True
        try:
            return any(self.backend.provision_failure(function) for function, _
                       in self._split(setting["function"], setting["qualifier"], 1))
        except FaaSError:
            return True  # its version or alias went: nothing of it is kept

    def _check_limits(self, name: str, qualifier: str, function: dict, count: int) -> None:
        """Refuse ``count`` environments of ``function`` over the function's reserved concurrency
        or the server's limits (the other configs counted as they are)."""
        others = [s for s in self.store.settings(PROVISIONED)
                  if (s["function"], s["qualifier"]) != (name, qualifier)]
        mine = sum(s["requested"] for s in others if s["function"] == name)
        reserved = function.get("concurrency")
        if reserved is not None and mine + count > reserved:
            held = f" ({mine} are provisioned through its other qualifiers)" if mine else ""
            raise InvalidParameter(
                f"{name} has reserved concurrency {reserved}, and provisioned concurrency counts "
                f"against it{held}: at most {max(reserved - mine, 0)} can be provisioned here; got "
                f"{count}. Provision fewer, or raise the function's reserved concurrency (concurrency=, "
                f"%%lambda --concurrency).")
        slots = self.slots
        if slots is None:
            return
        holding = [s for s in others if not self._failed(s)]  # a FAILED config holds nothing
        total = sum(s["requested"] for s in holding) + count
        if slots.max_concurrency is not None and total > slots.max_concurrency:
            raise InvalidParameter(
                f"{total} provisioned environments in all would be over the server's max_concurrency "
                f"({slots.max_concurrency} invocations at once): provision fewer, or raise "
                f"--FaaSServer.max_concurrency")
        held_mb = 0
        for s in holding:
            try:
                held_mb += s["requested"] * self.versions.get(s["function"], s["qualifier"])["memory"]
            except FaaSError:  # a config whose version went: it holds nothing
                continue
        if held_mb + count * function["memory"] > slots.memory_budget_mb:
            raise InvalidParameter(
                f"{count} environments of {name} at {function['memory']} MB"
                + (f", with {held_mb} MB already provisioned," if held_mb else "")
                + f" is over the server's memory budget of {slots.memory_budget_mb} MB: provisioned "
                f"environments hold their memory while idle. Provision fewer, give the function less "
                f"memory, or raise --FaaSServer.memory_budget_mb")
