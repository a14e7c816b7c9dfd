"""Per-qualifier settings: Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s) and
Put/Get/Delete/ListProvisionedConcurrencyConfig(s), over :mod:`..engine.function_settings`."""

from __future__ import annotations

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
        try:
            config = self.service.settings.put_event_invoke_config(
                name, qualifier, {k: body[k] for k in _EVENT_KEYS if k in body}, merge=merge)
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
        self.set_status(204)
        self.finish()


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
