"""Lambda layers: named, numbered zips a function puts on its path (in order, later wins).

A layer version is immutable: its zip (unpacked by the Lambda API's packages, named here
by hash), description, compatible runtimes and license.  Numbers count up per layer and
are never reused after a delete.  Deleting a version does not touch the functions that
use it (as in Lambda: their code keeps the unpacked files).
"""

from __future__ import annotations

from ... import limits
from ...errors import InvalidParameter, ResourceNotFound

#: Lambda's limit of layers per function
MAX_LAYERS = limits.LAYERS_MAX


class Layers:
    """Layer versions, and the layers of notebook functions (``@faas.function(layers=...)``).

    ``files``: the seam to the unpacked zips, set by the app (the Lambda API's
    ``compat.layers.FunctionLayers``, the one place that merges a function's layers):
    ``paths(records)`` makes the merged directory once and returns its ``sys.path`` entries,
    ``notebook_code(records, code)`` wraps a notebook function's pickle so that they join
    ``sys.path`` before it loads.  None when the Lambda API is off: no layers then."""

    def __init__(self, store, files=None):
        self.store = store
        self.files = files

    def resolve(self, specs) -> list[dict]:
        """A notebook function's ``["name:version", ...]`` -> ``[{name, version, zip_sha256,
        code_size}]`` in order, their directory merged; InvalidParameter naming an unknown one."""
        records = []
        for spec in limits.check_layers(specs):
            name, version = limits.parse_layer(spec)
            found = self.store.layer_version(name, version)
            if found is None:
                raise InvalidParameter(f"layer {spec!r}: layer version {name}:{version} does not exist; "
                                       f"publish it first (PublishLayerVersion) or check "
                                       f"ListLayerVersions for its numbers")
            records.append({"name": name, "version": version, "zip_sha256": found["zip_sha256"],
                            "code_size": found["code_size"]})
        if records:
            self._files().paths(records)  # merged now: a bad layer fails the deploy, not a call
        return records

    def _files(self):
        if self.files is None:
            raise InvalidParameter("layers need the server's Lambda API (FaaSServer.lambda_api=True)")
        return self.files

    def environment_code(self, function: dict, code: bytes) -> bytes:
        """What an environment loads for ``function``: its pickle, wrapped so that a notebook
        function's layers join ``sys.path`` before it is unpickled.  (A zip function's
        ``HandlerRef`` carries its layers already.)"""
        records = function.get("layers")
        return self._files().notebook_code(records, code) if records else code

    def publish(self, name: str, config: dict) -> dict:
        """A new version of layer ``name`` with ``config`` (zip_sha256, code_sha256, code_size,
        description, compatible_runtimes, license_info...); returns it."""
        version, created_at = self.store.add_layer_version(name, config)
        return dict(config, name=name, version=version, created_at=created_at)

    def get(self, name: str, version: int) -> dict:
        found = self.store.layer_version(name, int(version))
        if found is None:
            raise ResourceNotFound(f"Layer version not found: {name}:{version}")
        return found

    def versions(self, name: str) -> list[dict]:
        return self.store.layer_versions(name)

    def latest_of_each(self, matching=None) -> list[dict]:
        """Every layer's newest version (for which ``matching(version)`` holds), by name."""
        newest: dict[str, dict] = {}
        for layer in self.store.layer_versions():
            if matching is None or matching(layer):
                newest[layer["name"]] = layer
        return list(newest.values())

    def delete(self, name: str, version: int) -> None:
        self.store.delete_layer_version(name, int(version))
