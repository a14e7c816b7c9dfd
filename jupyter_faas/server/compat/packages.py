"""Zip deployment packages: checked, unpacked once per code hash, and referenced as a function's code.

A package is unpacked into ``<data dir>/lambda/code/<sha256 of the zip>/`` (content-addressed:
the same zip, one directory, however many functions or versions use it), written under a
temporary name and renamed into place, so a half-unpacked directory is never used.  The zip
itself is kept beside it (``<sha256>.zip``) for GetFunction's ``Code.Location``.

Checked before anything is written: it is a zip; no entry is absolute or climbs out
(``..``, zip-slip); a symlink entry points inside the package; the zipped and the unzipped
sizes (summed from the entries, and counted again while writing, since headers can lie)
are within the configured limits (Lambda's 50 MB and 250 MB by default).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pickle
import posixpath
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kernel_workers.lambda_handler import HandlerRef

from .errors import LambdaError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Package:
    """An unpacked zip: where, its hashes as the API shows them, its size."""

    sha256: str          # hex, names the directory
    code_sha256: str     # base64, Lambda's CodeSha256
    size: int            # bytes zipped, Lambda's CodeSize
    root: Path


class Packages:
    def __init__(self, directory: Path, max_zipped: int, max_unzipped: int):
        self.dir = Path(directory)
        self.max_zipped = max_zipped
        self.max_unzipped = max_unzipped

    def add(self, data: bytes) -> Package:
        """Check and unpack ``data`` (once per content); raises 400 naming what is wrong."""
        if len(data) > self.max_zipped:
            raise LambdaError(413, "RequestTooLargeException",
                              f"Zipped size must be smaller than {self.max_zipped} bytes (this one is "
                              f"{len(data)}); raise --FaaSServer.lambda_zip_max_mb to allow more")
        digest = hashlib.sha256(data)
        package = Package(digest.hexdigest(), base64.b64encode(digest.digest()).decode(), len(data),
                          self.dir / digest.hexdigest())
        if package.root.is_dir():
            return package
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError):
            raise LambdaError(400, "InvalidParameterValueException",
                              "Could not unzip uploaded file. Please check your file, then try to "
                              "upload again.") from None
        total = sum(m.file_size for m in members)
        if total > self.max_unzipped:
            raise self._too_big(total)
        self.dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=self.dir))
        try:
            self._extract(archive, members, staging)
            (self.dir / f"{package.sha256}.zip").write_bytes(data)
            try:
                os.rename(staging, package.root)
            except OSError:
                if not package.root.is_dir():  # another request unpacked the same zip first: fine
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return package

    def _too_big(self, size: int) -> LambdaError:
        return LambdaError.invalid(
            f"Unzipped size must be smaller than {self.max_unzipped} bytes (this package unzips to "
            f"at least {size}); raise --FaaSServer.lambda_unzipped_max_mb to allow more")

    def _extract(self, archive: zipfile.ZipFile, members, root: Path) -> None:
        written = 0
        for member in members:
            name = member.filename
            target = _inside(root, name)
            mode = member.external_attr >> 16
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                link = archive.read(member).decode("utf-8", "replace")
                if posixpath.isabs(link):
                    raise _slip(name, f"is a symlink to the absolute path {link!r}")
                _inside(root, posixpath.join(posixpath.dirname(name), link), name)
                os.symlink(link, target)
                continue
            with archive.open(member) as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > self.max_unzipped:
                        raise self._too_big(written)
                    dst.write(chunk)
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)

    def handler_code(self, package_sha256: str, handler: str, layer_dirs: tuple = ()) -> bytes:
        """The code the engine stores and an environment loads: a pickled reference that imports
        ``handler`` from the unpacked package (see :mod:`kernel_workers.lambda_handler`)."""
        root = str(self.dir / package_sha256)
        return pickle.dumps(HandlerRef(root, handler, tuple(layer_dirs)), protocol=4)

    def zip_path(self, package_sha256: str) -> Path:
        return self.dir / f"{package_sha256}.zip"


def _slip(name: str, why: str) -> LambdaError:
    return LambdaError.invalid(f"Could not unzip uploaded file: the entry {name!r} {why}; every entry "
                               f"must stay inside the package")


def _inside(root: Path, name: str, entry: str | None = None) -> Path:
    """``root/name``, refusing absolute names and names that climb out of ``root`` (zip-slip)."""
    entry = entry or name
    normalized = posixpath.normpath(name.replace("\\", "/"))
    if posixpath.isabs(normalized) or normalized == ".." or normalized.startswith("../"):
        raise _slip(entry, "points outside the package")
    return root / normalized
