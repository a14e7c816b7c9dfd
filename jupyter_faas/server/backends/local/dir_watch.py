"""Names appearing in a directory, from inotify, on the server's loop.

The buffer directory's watcher (:meth:`.buffer_files.BufferFiles.watch`): a client
writing a large argument creates its file (or renames a spare to it) before writing,
so the server learns of the argument as its writing starts, not once its invocation
arrives, and starts making spare files that much sooner.

Linux only (inotify through libc); where it is missing, nothing is watched and the
spares follow the invocations alone.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct

log = logging.getLogger("jupyter_faas.server")

IN_MODIFY = 0x002     # written, or truncated (a new file given its size)
IN_MOVED_TO = 0x080   # renamed into the directory (a spare taken)
IN_CREATE = 0x100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class DirWatch:
    """Calls ``seen(name)`` on the running loop for each name created, renamed into,
    or changed in ``directory`` (once per batch of events) whose name starts with ``prefix``."""

    def __init__(self, directory, prefix: str, seen):
        self.prefix = prefix.encode()
        self.seen = seen
        self.fd = None
        self._loop = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        if libc.inotify_add_watch(fd, os.fsencode(directory), IN_CREATE | IN_MODIFY | IN_MOVED_TO) < 0:
            log.debug("cannot watch %s (errno %d)", directory, ctypes.get_errno())
            os.close(fd)
            return
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        names, at = [], 0
        while at + _EVENT.size <= len(data):
            _, _, _, length = _EVENT.unpack_from(data, at)
            name = data[at + _EVENT.size:at + _EVENT.size + length].split(b"\0", 1)[0]
            at += _EVENT.size + length
            if name.startswith(self.prefix) and name not in names:
                names.append(name)
        for name in names:
            self.seen(name.decode(errors="replace"))

    def close(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            self._loop.remove_reader(fd)
        except (RuntimeError, ValueError):
            pass  # the loop is closed
        os.close(fd)
