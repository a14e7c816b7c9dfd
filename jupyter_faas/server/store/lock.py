"""One server per store: an exclusive lock on ``<data dir>/faas.lock`` for the server's life.

Two servers on one store would each run recovery on the other's live invocations (re-run
what is running, fail what already ended) and overwrite each other's runtime file.  The
lock is ``flock``: the kernel drops it when its process dies, however it dies, so a
crashed server never blocks the next one.  The file holds the owner's pid, for the
message a second server prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ...errors import ServerError


class StoreLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process ends)."""

    def __init__(self, file):
        self.file = file

    @classmethod
    def acquire(cls, data_dir: Path, describe_owner=None) -> "StoreLock":
        """Take the store's lock, or raise :class:`ServerError` naming the server that holds it.

        ``describe_owner(pid)``: a few words on the server with that pid (its URL), or None.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "faas.lock"
        file = open(path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = file.read().strip()
            file.close()
            where = (describe_owner(int(owner)) if describe_owner and owner.isdigit() else None)
            who = f"pid {owner}" + (f", {where}" if where else "") if owner else "another process"
            raise ServerError(
                f"another FaaS server ({who}) is using the store in {data_dir}: one store serves one "
                f"server at a time. Use that server (`jupyter faas status`), stop it first "
                f"(`jupyter faas stop`), or give this one its own --FaaSServer.faas_data_dir") from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        return cls(file)

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
