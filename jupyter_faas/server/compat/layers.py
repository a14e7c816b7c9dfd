"""Lambda layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions,
DeleteLayerVersion, and what a function's ``Layers`` put on its path.

A layer version is a zip, checked and unpacked like a function's (:class:`.packages.Packages`,
once per hash); the engine keeps its record (:mod:`..engine.layers`).  A function's layers
(at most 5) are merged in the order given, a later layer's files winning, into one
directory per combination (``<data dir>/lambda/opt/<hash of the layers' hashes>/``), as
Lambda extracts them into ``/opt``; that directory's ``python/`` and
``python/lib/python3.X/site-packages/`` follow the function's code on ``sys.path``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import sys
import tempfile
from pathlib import Path

from kernel_workers.lambda_handler import LayeredCode

from ...errors import ResourceNotFound
from ..engine.layers import MAX_LAYERS
from . import names
from .errors import LambdaError, LambdaHandler
from .names import last_modified

_LAYER_NAME = re.compile(r"[a-zA-Z0-9-_]{1,140}")
_LAYER_ARN = re.compile(r"^arn:(?:aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:"
                        r"(?P<name>[a-zA-Z0-9-_]+):(?P<version>[0-9]+)$")


def layer_arn(region: str, name: str, version: int | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{names.ACCOUNT_ID}:layer:{name}"
    return arn if version is None else f"{arn}:{version}"


class FunctionLayers:
    """A function's ``Layers`` (ARNs) checked, and the merged directory they make (for zip
    functions and, as the engine's :attr:`~..engine.layers.Layers.files`, notebook ones)."""

    def __init__(self, service, packages):
        self.service = service
        self.packages = packages
        self.opt_root = Path(packages.dir).parent / "opt"

    def resolve(self, arns) -> list[dict]:
        """``[{arn, name, version, zip_sha256, code_size}]`` of ``arns``, in order; 400/404 otherwise."""
        if not isinstance(arns, list) or not all(isinstance(a, str) for a in arns):
            raise LambdaError.invalid("Layers must be a list of layer version ARNs")
        if len(arns) > MAX_LAYERS:
            raise LambdaError.invalid(f"1 validation error detected: Value at 'layers' failed to satisfy "
                                      f"constraint: Member must have length less than or equal to {MAX_LAYERS}")
        out = []
        for arn in arns:
            m = _LAYER_ARN.match(arn)
            if not m:
                raise LambdaError.invalid(f"1 validation error detected: Value '{arn}' at 'layers' failed to "
                                          f"satisfy constraint: Member must be a layer version ARN "
                                          f"(arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)")
            try:
                layer = self.service.layers.get(m["name"], int(m["version"]))
            except ResourceNotFound:
                raise LambdaError.invalid(f"Layer version {arn} does not exist.") from None
            out.append({"arn": arn, "name": m["name"], "version": int(m["version"]),
                        "zip_sha256": layer["zip_sha256"], "code_size": layer["code_size"]})
        if len({(layer["name"]) for layer in out}) != len(out):
            raise LambdaError.invalid("Two different versions of the same layer are not allowed.")
        return out

    def paths(self, layers: list[dict]) -> tuple[str, ...]:
        """The ``sys.path`` entries of ``layers`` merged in order (the directory made once)."""
        if not layers:
            return ()
        shas = [layer["zip_sha256"] for layer in layers]
        opt = self.opt_root / hashlib.sha256(":".join(shas).encode()).hexdigest()
        if not opt.is_dir():
            self.opt_root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".merging-", dir=self.opt_root))
            try:
                for sha in shas:  # in order: a later layer's file replaces an earlier one's
                    shutil.copytree(self.packages.dir / sha, staging, symlinks=True, dirs_exist_ok=True)
                try:
                    os.rename(staging, opt)
                except OSError:
                    if not opt.is_dir():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        python = opt / "python"
        site = python / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        return str(python), str(site)


    def notebook_code(self, layers: list[dict], code: bytes) -> bytes:
        """A notebook function's pickle, wrapped so that ``layers`` join ``sys.path`` (the same
        merged directory as a zip function's) before the environment unpickles it."""
        return pickle.dumps(LayeredCode(self.paths(layers), code), protocol=4)


def _layer_version(layer: dict, region: str, packages) -> dict:
    out = {"Content": {"Location": packages.zip_path(layer["zip_sha256"]).as_uri(),
                       "CodeSha256": layer["code_sha256"], "CodeSize": layer["code_size"]},
           "LayerArn": layer_arn(region, layer["name"]),
           "LayerVersionArn": layer_arn(region, layer["name"], layer["version"]),
           "Description": layer.get("description", ""),
           "CreatedDate": last_modified(layer["created_at"]),
           "Version": layer["version"]}
    for key in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
        if layer.get(key):
            out[key] = layer[key]
    return out


def _page(items: list, marker: str | None, max_items: int, key) -> tuple[list, str | None]:
    """One page after ``marker`` (the key of the last item of the page before)."""
    if marker is not None:
        items = [i for i in items if key(i) > marker]
    page = items[:max_items]
    return page, (str(key(page[-1])) if len(items) > max_items else None)


class _LayerHandler(LambdaHandler):
    def layer_name(self, name: str) -> str:
        m = _LAYER_ARN.match(name + ":1") if name.startswith("arn:") else None
        name = m["name"] if m else name
        if not _LAYER_NAME.fullmatch(name):
            raise LambdaError.invalid(f"1 validation error detected: Value '{name}' at 'layerName' failed "
                                      f"to satisfy constraint: Member must satisfy regular expression "
                                      f"pattern: [a-zA-Z0-9-_]+")
        return name

    def max_items(self) -> int:
        raw = self.get_query_argument("MaxItems", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 50:
            raise LambdaError.invalid(f"MaxItems must be between 1 and 50; got {raw!r}")
        return int(raw)

    def get_version(self, name: str, version) -> dict:
        try:
            return self.service.layers.get(name, int(version))
        except (ResourceNotFound, ValueError):
            raise LambdaError.not_found(f"Layer version {layer_arn(self.region, name, version)} does "
                                        f"not exist.") from None


class LayersHandler(_LayerHandler):
    """``GET /2018-10-31/layers``: ListLayers (and GetLayerVersionByArn with ``?find=LayerVersion``)."""

    def get(self):
        if self.get_query_argument("find", None) == "LayerVersion":
            arn = self.get_query_argument("Arn", "")
            m = _LAYER_ARN.match(arn)
            if not m:
                raise LambdaError.invalid(f"Arn {arn!r} is not a layer version ARN")
            layer = self.get_version(m["name"], m["version"])
            self.send_json(_layer_version(layer, self.region, self.compat.packages))
            return
        runtime = self.get_query_argument("CompatibleRuntime", None)
        layers = self.service.layers.latest_of_each(
            lambda layer: runtime is None or runtime in (layer.get("CompatibleRuntimes") or [runtime]))
        page, marker = _page(layers, self.get_query_argument("Marker", None), self.max_items(),
                             lambda layer: layer["name"])
        out = {"Layers": [{"LayerName": layer["name"], "LayerArn": layer_arn(self.region, layer["name"]),
                           "LatestMatchingVersion": {
                               k: v for k, v in _layer_version(layer, self.region, self.compat.packages).items()
                               if k not in ("Content", "LayerArn")}} for layer in page]}
        if marker:
            out["NextMarker"] = marker
        self.send_json(out)


class LayerVersionsHandler(_LayerHandler):
    """``/2018-10-31/layers/{name}/versions``: PublishLayerVersion, ListLayerVersions."""

    def post(self, name):
        name = self.layer_name(name)
        body = self.json_body()
        content = body.get("Content")
        if not isinstance(content, dict) or "ZipFile" not in content:
            raise LambdaError.invalid("Content.ZipFile is required: jupyter_faas takes the zip in the "
                                      "request (S3Bucket/S3Key are not reachable locally)")
        description = body.get("Description", "")
        if not isinstance(description, str) or len(description) > 256:
            raise LambdaError.invalid("Description must be a string of at most 256 characters")
        package = self.compat.packages.add(self.compat._zip(content))
        config = {"zip_sha256": package.sha256, "code_sha256": package.code_sha256,
                  "code_size": package.size, "description": description}
        for key in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if body.get(key):
                config[key] = body[key]
        layer = self.service.layers.publish(name, config)
        self.send_json(_layer_version(layer, self.region, self.compat.packages), 201)

    def get(self, name):
        name = self.layer_name(name)
        runtime = self.get_query_argument("CompatibleRuntime", None)
        versions = [layer for layer in self.service.layers.versions(name)
                    if runtime is None or runtime in (layer.get("CompatibleRuntimes") or [runtime])]
        # newest first, as Lambda lists them; the marker is the last version of the page
        versions.reverse()
        marker = self.get_query_argument("Marker", None)
        if marker is not None:
            if not marker.isdigit():
                raise LambdaError.invalid(f"Marker {marker!r} is not one this server gave")
            versions = [v for v in versions if v["version"] < int(marker)]
        limit = self.max_items()
        page = versions[:limit]
        out = {"LayerVersions": [{k: v for k, v in _layer_version(layer, self.region, self.compat.packages).items()
                                  if k not in ("Content", "LayerArn")} for layer in page]}
        if len(versions) > limit:
            out["NextMarker"] = str(page[-1]["version"])
        self.send_json(out)


class LayerVersionHandler(_LayerHandler):
    """``/2018-10-31/layers/{name}/versions/{number}``: GetLayerVersion, DeleteLayerVersion."""

    def get(self, name, number):
        layer = self.get_version(self.layer_name(name), number)
        self.send_json(_layer_version(layer, self.region, self.compat.packages))

    def delete(self, name, number):
        # Lambda answers 204 for a version that does not exist, too
        if number.isdigit():
            self.service.layers.delete(self.layer_name(name), int(number))
        self.set_status(204)
        self.finish()
