"""Lambda's versions and aliases over the engine's content-addressed versions.

Two kinds of version, and how they map::

    engine version   every new code or configuration of a function (content-addressed: the
                     same code and config is the same number); immutable; what runs, what
                     environments are kept warm for, the invocation row's ``version``
    $LATEST          the function's newest engine version, whatever it is at call time
    published N      1, 2, 3... per function, made by publish(): pins the engine version
                     $LATEST was then, so it never changes (engine versions never do)
    alias            a name for a published version (or $LATEST), with at most one more
                     published version taking a share of the calls (``weights``)

A qualifier (``$LATEST``, ``"3"``, ``"live"``) resolves to a function version dict (the
registry's, copied) with ``lambda_version`` set: ``$LATEST`` or the published number that
runs.  That is what the START line, ``context.function_version``, the environment's
``AWS_LAMBDA_FUNCTION_VERSION``, the invocation row's ``lambda_version`` and Invoke's
``X-Amz-Executed-Version`` say.  Environments are kept per (function, engine version,
Lambda version), as Lambda keeps them per version.  A call through an alias with weights
picks its version per call (:meth:`Versions.resolve`).
"""

from __future__ import annotations

import random
import re
import uuid

from ...errors import InvalidParameter, ResourceNotFound
from ..model import LATEST

#: an alias name (Lambda's pattern: not all digits, so it never reads as a version)
ALIAS_NAME = re.compile(r"(?!^[0-9]+$)([a-zA-Z0-9-_]{1,128})")


class Versions:
    """Published versions and aliases of the registry's functions, stored by ``store``."""

    def __init__(self, store, registry, rng: random.Random | None = None):
        self.store = store
        self.registry = registry
        self.rng = rng or random.Random()

    # ---- versions ----------------------------------------------------------------------

    def latest(self, name: str) -> dict:
        return dict(self.registry.get(name), lambda_version=LATEST)

    def publish(self, name: str, description: str = "") -> dict:
        """Publish ``$LATEST`` as the next version (or return the newest published one if it
        already pins the same engine version); returns it, with ``created``."""
        latest = self.registry.get(name)
        number, created = self.store.publish_version(name, latest["version"], description)
        return dict(self.published(name, number), created=created)

    def published(self, name: str, number: int) -> dict:
        """Published version ``number`` of ``name``; raises ResourceNotFound."""
        row = self.store.published_version(name, int(number))
        if row is None:
            self.registry.get(name)  # the function itself may be missing: say that first
            raise ResourceNotFound(f"Function not found: {name}:{number}: no published version {number}")
        return self._as_function(name, row)

    def list(self, name: str) -> list[dict]:
        """``$LATEST`` then every published version, oldest first."""
        return [self.latest(name)] + [self._as_function(name, row)
                                      for row in self.store.published_versions(name)]

    def delete_version(self, name: str, number: int) -> None:
        self.published(name, number)
        using = [a["name"] for a in self.store.aliases(name)
                 if a["version"] == str(number) or str(number) in a["weights"]]
        if using:
            raise InvalidParameter(f"version {number} of {name} is used by the alias(es) "
                                   f"{', '.join(using)}: point them elsewhere first")
        self.store.delete_published_version(name, int(number))

    def _as_function(self, name: str, row: dict) -> dict:
        return dict(self.registry.get(name, row["engine_version"]), lambda_version=str(row["number"]),
                    description=row["description"], published_at=row["created_at"])

    # ---- aliases -----------------------------------------------------------------------

    def put_alias(self, name: str, alias: str, version: str, weights: dict | None = None,
                  description: str = "") -> dict:
        """Create or replace ``alias`` -> ``version`` with ``weights`` ({version: share}, one
        entry at most, share in [0, 1]).  Raises InvalidParameter or ResourceNotFound."""
        if not isinstance(alias, str) or not ALIAS_NAME.fullmatch(alias):
            raise InvalidParameter(f"alias name {alias!r}: 1 to 128 of a-z A-Z 0-9 - _, not all digits")
        version = self._version_name(name, version)
        weights = {self._version_name(name, v): w for v, w in (weights or {}).items()}
        if len(weights) > 1:
            raise InvalidParameter(f"an alias routes to at most one additional version; got {len(weights)}")
        for extra, share in weights.items():
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
                raise InvalidParameter(f"the weight of version {extra} must be between 0.0 and 1.0; got {share!r}")
            if LATEST in (extra, version):
                raise InvalidParameter("an alias with additional version weights must point at published "
                                       "versions, not $LATEST")
            if extra == version:
                raise InvalidParameter(f"the additional version {extra} is the alias's own version: "
                                       f"give a different one")
        record = {"name": alias, "version": version, "weights": {k: float(v) for k, v in weights.items()},
                  "description": description or "", "revision": str(uuid.uuid4())}
        self.store.put_alias(name, record)
        return record

    def alias(self, name: str, alias: str) -> dict:
        found = self.store.alias(name, alias)
        if found is None:
            self.registry.get(name)
            raise ResourceNotFound(f"Alias not found: {name}:{alias}")
        return found

    def aliases(self, name: str) -> list[dict]:
        self.registry.get(name)
        return self.store.aliases(name)

    def delete_alias(self, name: str, alias: str) -> None:
        self.alias(name, alias)
        self.store.delete_alias(name, alias)

    def _version_name(self, name: str, version) -> str:
        """``version`` as stored ("$LATEST" or "3"), checked to exist."""
        text = str(version)
        if text == LATEST:
            self.registry.get(name)
            return LATEST
        if not text.isdigit():
            raise InvalidParameter(f"version {version!r} is not $LATEST or a published version number")
        self.published(name, int(text))
        return str(int(text))

    # ---- qualifiers ----------------------------------------------------------------------

    def get(self, name: str, qualifier: str | None) -> dict:
        """What ``name:qualifier`` names (an alias: its own version, ignoring weights)."""
        if qualifier in (None, "", LATEST):
            return self.latest(name)
        if qualifier.isdigit():
            return self.published(name, int(qualifier))
        return self._version(name, self.alias(name, qualifier)["version"])

    def resolve(self, name: str, qualifier: str | None) -> dict:
        """The version a call of ``name:qualifier`` runs: an alias with weights picks one per
        call, an additional version with probability its weight."""
        if qualifier in (None, "", LATEST) or qualifier.isdigit():
            return self.get(name, qualifier)
        alias = self.alias(name, qualifier)
        version = alias["version"]
        for extra, share in alias["weights"].items():
            if self.rng.random() < share:
                version = extra
        return self._version(name, version)

    def _version(self, name: str, version: str) -> dict:
        return self.latest(name) if version == LATEST else self.published(name, int(version))
