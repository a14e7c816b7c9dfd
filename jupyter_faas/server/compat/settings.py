"""Per-qualifier settings: Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s) and
Put/Get/Delete/ListProvisionedConcurrencyConfig(s), over :mod:`..engine.function_settings`."""

from __future__ import annotations

import re

from ...errors import InvalidParameter, ResourceNotFound
from . import names
from .errors import LambdaError, LambdaHandler
from .names import last_modified

_EVENT_KEYS = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")


class _SettingsHandler(LambdaHandler):
    def target(self, name: str) -> tuple[str, str | None]:
        """``(name, qualifier)``, both existing (404 otherwise)."""
        name, qualifier = names.parse(name, self.get_query_argument("Qualifier", None))
        try:
            self.service.versions.get(name, qualifier)
        except ResourceNotFound:
            raise LambdaError.not_found(f"Function not found: "
                                        f"{names.function_arn(self.region, name, qualifier)}") from None
        return name, qualifier


def _event_invoke(name: str, config: dict, region: str) -> dict:
    qualifier = config["qualifier"]
    out = {"LastModified": config["updated_at"],
           "FunctionArn": names.function_arn(region, name, qualifier)}
    out.update({k: config[k] for k in _EVENT_KEYS if k in config})
    return out


class EventInvokeConfigHandler(_SettingsHandler):
    """``/2019-09-25/functions/{name}/event-invoke-config``: Put (replace), Update (POST: merge),
    Get, Delete."""

    def _write(self, name: str, merge: bool) -> None:
        name, qualifier = self.target(name)
        body = self.json_body()
        given = {k: body[k] for k in _EVENT_KEYS if k in body}
        if merge:
            given = {**{k: v for k, v in (self.service.settings.event_invoke_config(name, qualifier) or {}).items()
                        if k in _EVENT_KEYS}, **given}
        try:
            if qualifier in (None, names.LATEST):
                # the async queue's policy is per function: $LATEST's config is the one it applies
                self.service.put_event_config(name, **_queue_policy(given))
            config = self.service.settings.put_event_invoke_config(name, qualifier, given)
        except InvalidParameter as exc:
            raise LambdaError.invalid(exc.message) from None
        self.send_json(_event_invoke(name, config, self.region))

    def put(self, name):
        self._write(name, merge=False)

    def post(self, name):
        self._write(name, merge=True)

    def get(self, name):
        name, qualifier = self.target(name)
        config = self.service.settings.event_invoke_config(name, qualifier)
        if config is None:
            raise LambdaError.not_found(f"The function {names.function_arn(self.region, name, qualifier)} "
                                        f"doesn't have an EventInvokeConfig")
        self.send_json(_event_invoke(name, config, self.region))

    def delete(self, name):
        name, qualifier = self.target(name)
        if not self.service.settings.delete_event_invoke_config(name, qualifier):
            raise LambdaError.not_found(f"The function {names.function_arn(self.region, name, qualifier)} "
                                        f"doesn't have an EventInvokeConfig")
        if qualifier in (None, names.LATEST):
            self.service.put_event_config(name)  # the queue's defaults again
        self.set_status(204)
        self.finish()


_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:(?P<name>[a-zA-Z0-9-_]+)(:[^:]+)?$")
_QUEUE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:[a-z0-9-]+:\d{12}:(?P<name>[a-zA-Z0-9-_]+)$")


def _destination(which: str, target) -> str | None:
    """A Lambda destination ARN as the async queue names it: ``function:<name>`` or
    ``queue:<name>`` (its local SQS-like queues); other services are not reachable here."""
    arn = (target or {}).get("Destination") if isinstance(target, dict) else None
    if not arn:
        return None
    for pattern, kind in ((_FUNCTION_ARN, "function"), (_QUEUE_ARN, "queue")):
        m = pattern.match(arn)
        if m:
            return f"{kind}:{m['name']}"
    raise InvalidParameter(f"DestinationConfig.{which}: {arn!r} is not a destination this server can "
                           f"deliver to; give a Lambda function ARN or an SQS queue ARN (a local queue)")


def _queue_policy(config: dict) -> dict:
    """Lambda's event-invoke config as the async queue's options (unset keys: its defaults)."""
    destinations = config.get("DestinationConfig") or {}
    if not isinstance(destinations, dict):
        raise InvalidParameter("DestinationConfig must be an object with OnSuccess and OnFailure")
    policy = {"retries": config.get("MaximumRetryAttempts"),
              "max_event_age": config.get("MaximumEventAgeInSeconds"),
              "on_success": _destination("OnSuccess", destinations.get("OnSuccess")),
              "on_failure": _destination("OnFailure", destinations.get("OnFailure"))}
    retries = policy["retries"]
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 2):
        raise InvalidParameter(f"MaximumRetryAttempts must be between 0 and 2; got {retries!r}")
    age = policy["max_event_age"]
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 60 <= age <= 21600):
        raise InvalidParameter(f"MaximumEventAgeInSeconds must be between 60 and 21600; got {age!r}")
    return {k: v for k, v in policy.items() if v is not None}


class EventInvokeConfigListHandler(_SettingsHandler):
    """``/2019-09-25/functions/{name}/event-invoke-config/list``: ListFunctionEventInvokeConfigs."""

    def get(self, name):
        name, _ = self.target(name)
        configs = self.service.settings.event_invoke_configs(name)
        self.send_json({"FunctionEventInvokeConfigs": [_event_invoke(name, c, self.region) for c in configs]})


def _provisioned(state: dict) -> dict:
    out = {"RequestedProvisionedConcurrentExecutions": state["requested"],
           "AllocatedProvisionedConcurrentExecutions": state["allocated"],
           "AvailableProvisionedConcurrentExecutions": state["allocated"],
           "Status": state["status"], "LastModified": last_modified(state["updated_at"])}
    if state.get("reason"):
        out["StatusReason"] = state["reason"]
    return out


class ProvisionedConcurrencyHandler(_SettingsHandler):
    """``/2019-09-30/functions/{name}/provisioned-concurrency``: Put (202), Get, Delete, and
    ``?List=ALL`` (ListProvisionedConcurrencyConfigs)."""

    def put(self, name):
        name, qualifier = self.target(name)
        count = self.json_body().get("ProvisionedConcurrentExecutions")
        try:
            state = self.service.settings.put_provisioned(name, qualifier, count)
        except InvalidParameter as exc:
            raise LambdaError.invalid(exc.message) from None
        self.send_json(_provisioned(state), 202)

    def get(self, name):
        if self.get_query_argument("List", None) == "ALL":
            name, _ = names.parse(name)
            self.target(name)
            configs = [dict(_provisioned(state), FunctionArn=names.function_arn(self.region, name, qualifier))
                       for qualifier, state in self.service.settings.provisioned_configs(name)]
            self.send_json({"ProvisionedConcurrencyConfigs": configs})
            return
        name, qualifier = self.target(name)
        state = self.service.settings.provisioned(name, qualifier or names.LATEST)
        if state is None:
            raise LambdaError(404, "ProvisionedConcurrencyConfigNotFoundException",
                              f"No Provisioned Concurrency Config found for this function: "
                              f"{names.function_arn(self.region, name, qualifier)}")
        self.send_json(_provisioned(state))

    def delete(self, name):
        name, qualifier = self.target(name)
        self.service.settings.delete_provisioned(name, qualifier or names.LATEST)
        self.set_status(204)
        self.finish()
