"""Lambda layers: named, numbered zips a function puts on its path (in order, later wins).

A layer version is immutable: its zip (unpacked by the Lambda API's packages, named here
by hash), description, compatible runtimes and license.  Numbers count up per layer and
are never reused after a delete.  Deleting a version does not touch the functions that
use it (as in Lambda: their code keeps the unpacked files).
"""

from __future__ import annotations

from ...errors import ResourceNotFound

#: Lambda's limit of layers per function
MAX_LAYERS = 5


class Layers:
    def __init__(self, store):
        self.store = store

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
