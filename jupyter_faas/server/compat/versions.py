"""PublishVersion, ListVersionsByFunction and the aliases (Create/Get/Update/Delete/ListAliases),
over the engine's :mod:`..engine.versions` (which explains how Lambda's versions map onto
the engine's content-addressed ones)."""

from __future__ import annotations

from ...errors import InvalidParameter, ResourceNotFound
from . import names
from .errors import LambdaError, LambdaHandler


def _max_items(handler, default: int = 50) -> int:
    raw = handler.get_query_argument("MaxItems", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise LambdaError.invalid(f"1 validation error detected: Value '{raw}' at 'maxItems' failed to "
                                  f"satisfy constraint: Member must have value between 1 and 10000")
    return int(raw)


def alias_configuration(name: str, alias: dict, region: str) -> dict:
    out = {"AliasArn": names.function_arn(region, name, alias["name"]), "Name": alias["name"],
           "FunctionVersion": alias["version"], "Description": alias["description"],
           "RevisionId": alias["revision"]}
    if alias["weights"]:
        out["RoutingConfig"] = {"AdditionalVersionWeights": alias["weights"]}
    return out


class _VersionsHandler(LambdaHandler):
    def unqualified(self, name: str) -> str:
        """The function's name from any form; a qualifier has no place on these paths."""
        name, qualifier = names.parse(name)
        if qualifier is not None:
            raise LambdaError.invalid(f"{name}: a qualifier has no meaning here; give the "
                                      f"function's name or unqualified ARN")
        try:
            self.service.get_function(name)
        except ResourceNotFound:
            raise LambdaError.not_found(f"Function not found: {names.function_arn(self.region, name)}") from None
        return name

    def _exists(self, name: str, alias: str) -> bool:
        try:
            self.service.versions.alias(name, alias)
            return True
        except ResourceNotFound:
            return False

    def _put(self, name: str, alias: str, version, weights, description) -> dict:
        if not isinstance(description, str) or len(description) > 256:
            raise LambdaError.invalid("Description must be a string of at most 256 characters")
        try:
            record = self.service.versions.put_alias(name, alias, str(version), weights, description)
            self.service.settings.sync(name)  # its provisioned environments follow it
            return record
        except ResourceNotFound as exc:
            raise LambdaError.not_found(f"Function not found: {names.function_arn(self.region, name, str(version))}"
                                        f" ({exc.message})") from None
        except InvalidParameter as exc:
            raise LambdaError.invalid(exc.message) from None


class VersionsHandler(_VersionsHandler):
    """``/2015-03-31/functions/{name}/versions``: PublishVersion, ListVersionsByFunction."""

    def post(self, name):
        name = self.unqualified(name)
        body = self.json_body()
        latest = self.service.versions.latest(name)
        current = self.compat.configuration(latest, self.region)
        if body.get("CodeSha256") and body["CodeSha256"] != current["CodeSha256"]:
            raise LambdaError(412, "PreconditionFailedException",
                              f"CodeSHA256 ({body['CodeSha256']}) is different from current CodeSHA256 in "
                              f"$LATEST ({current['CodeSha256']}). Please try again with the CodeSHA256 in "
                              f"$LATEST.")
        if body.get("RevisionId") and body["RevisionId"] != current["RevisionId"]:
            raise LambdaError(412, "PreconditionFailedException",
                              "The Revision Id provided does not match the latest Revision Id. Call the "
                              "GetFunction/GetAlias API to retrieve the latest Revision Id")
        description = body.get("Description", "")
        if not isinstance(description, str) or len(description) > 256:
            raise LambdaError.invalid("Description must be a string of at most 256 characters")
        published = self.service.versions.publish(name, description)
        self.send_json(self.compat.configuration(published, self.region), 201)

    def get(self, name):
        name = self.unqualified(name)
        versions = self.service.versions.list(name)   # $LATEST first, then 1, 2, ...
        marker = self.get_query_argument("Marker", None)
        if marker:
            keys = [v["lambda_version"] for v in versions]
            if marker not in keys:
                raise LambdaError.invalid(f"Marker {marker!r} is not one this server gave")
            versions = versions[keys.index(marker) + 1:]
        limit = _max_items(self)
        page = versions[:limit]
        out = {"Versions": [self.compat.configuration(v, self.region) for v in page]}
        if len(versions) > limit:
            out["NextMarker"] = page[-1]["lambda_version"]
        self.send_json(out)


def _routing(body: dict) -> dict | None:
    routing = body.get("RoutingConfig")
    if routing is None:
        return None
    if not isinstance(routing, dict):
        raise LambdaError.invalid("RoutingConfig must be an object")
    weights = routing.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict):
        raise LambdaError.invalid("RoutingConfig.AdditionalVersionWeights must map a version to a weight")
    return weights


class AliasesHandler(_VersionsHandler):
    """``/2015-03-31/functions/{name}/aliases``: CreateAlias, ListAliases."""

    def post(self, name):
        name = self.unqualified(name)
        body = self.json_body()
        alias, version = body.get("Name"), body.get("FunctionVersion")
        if not alias or not version:
            raise LambdaError.invalid("Name and FunctionVersion are required")
        if self._exists(name, alias):
            raise LambdaError.conflict(f"Alias already exists: {names.function_arn(self.region, name, alias)}")
        record = self._put(name, alias, version, _routing(body), body.get("Description", ""))
        self.send_json(alias_configuration(name, record, self.region), 201)

    def get(self, name):
        name = self.unqualified(name)
        aliases = self.service.versions.aliases(name)
        version = self.get_query_argument("FunctionVersion", None)
        if version:
            aliases = [a for a in aliases if a["version"] == version]
        marker = self.get_query_argument("Marker", None)
        if marker:
            aliases = [a for a in aliases if a["name"] > marker]
        limit = _max_items(self)
        page = aliases[:limit]
        out = {"Aliases": [alias_configuration(name, a, self.region) for a in page]}
        if len(aliases) > limit:
            out["NextMarker"] = page[-1]["name"]
        self.send_json(out)


class AliasHandler(_VersionsHandler):
    """``/2015-03-31/functions/{name}/aliases/{alias}``: GetAlias, UpdateAlias, DeleteAlias."""

    def _alias(self, name: str, alias: str) -> dict:
        try:
            return self.service.versions.alias(name, alias)
        except ResourceNotFound:
            raise LambdaError.not_found(f"Alias not found: {names.function_arn(self.region, name, alias)}") from None

    def get(self, name, alias):
        name = self.unqualified(name)
        self.send_json(alias_configuration(name, self._alias(name, alias), self.region))

    def put(self, name, alias):
        name = self.unqualified(name)
        current = self._alias(name, alias)
        body = self.json_body()
        if body.get("RevisionId") and body["RevisionId"] != current["revision"]:
            raise LambdaError(412, "PreconditionFailedException",
                              "The Revision Id provided does not match the latest Revision Id. Call the "
                              "GetFunction/GetAlias API to retrieve the latest Revision Id")
        weights = _routing(body)
        record = self._put(name, alias, body.get("FunctionVersion") or current["version"],
                           current["weights"] if weights is None else weights,
                           body.get("Description", current["description"]))
        self.send_json(alias_configuration(name, record, self.region))

    def delete(self, name, alias):
        name = self.unqualified(name)
        if self._exists(name, alias):
            self.service.versions.delete_alias(name, alias)
            self.service.settings.delete_provisioned(name, alias)
        self.set_status(204)
        self.finish()
