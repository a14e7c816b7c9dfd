"""Out-of-band pickle buffers in files, for processes that share a machine.

Pickle protocol 5 hands large contiguous buffers (numpy arrays, bytearrays) to a
``buffer_callback`` instead of copying them into the pickle.  When sender and
receiver share a filesystem, those buffers are written once into a file of the
server's buffer directory, and the frame carries only the pickle and a
descriptor::

    {"file": "<name>", "spans": [[offset, length], ...]}     # one span per buffer, in order

The receiver maps the file copy-on-write (``ACCESS_COPY``): the buffers become
writable memory without a copy (numpy gets a writable array), and writing to
them never changes the file.  So a buffer costs one copy end to end (the write
into the page cache); the frames stay small whatever the data.

Names are chosen by the writer (``arg-<random>`` by a client, ``res-<request id>``
by an environment, a name the server dictates) and are plain file names: a
descriptor never carries a path, and :func:`check_name` refuses anything that
could leave the directory.

Spares: the server keeps a few ``spare-*`` files whose pages are already in the
page cache (zeros, never anyone's data).  A writer takes one by renaming it to its
own name and writes over it: overwriting cached pages runs at memory speed, while
a new file must first get fresh pages from the kernel, which on a VM can cost more
than the copy itself.  The server makes new spares in the background.

This module does not decide whether files may be used (the client proves it
shares the server's directory; the server tells environments where it is), and
never reads a descriptor's file without the caller having checked the name.
"""

from __future__ import annotations

import mmap
import os
import re
import stat

from . import tracebacks

PICKLE_PROTOCOL = 5
#: Out-of-band buffers that add up to less than this travel inside the pickle: a file
#: costs a few system calls, which only pays for itself on large data.
THRESHOLD = 1 << 20
#: Each buffer starts at a multiple of this in its file, so mapped arrays are aligned
#: for any dtype and for vector loads.
ALIGN = 64
#: The most buffers one descriptor may name (a bound for a hostile or corrupt peer).
MAX_SPANS = 100_000

#: The file in the buffer directory holding the server's instance nonce; a client that can
#: read the nonce the status endpoint reports shares the directory.  (A leading dot: no
#: descriptor can name it.)
INSTANCE_FILE = ".instance"

SPARE_PREFIX = "spare-"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


class BufferFileError(Exception):
    """A descriptor or its file is not usable (bad name, missing file, spans past its end)."""


def check_name(name) -> str:
    """``name`` if it is a plain file name that cannot leave the directory, else raise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BufferFileError(f"{name!r} is not a buffer file name")
    return name


def result_name(request_id: str) -> str:
    """The file an environment writes an invocation's result buffers to (the server's rule)."""
    return check_name(f"res-{request_id}")


def spans_of(descriptor) -> list:
    """The validated ``[[offset, length], ...]`` of a descriptor."""
    spans = descriptor.get("spans") if isinstance(descriptor, dict) else None
    if not isinstance(spans, list) or len(spans) > MAX_SPANS:
        raise BufferFileError("a buffer descriptor needs a list of spans")
    for span in spans:
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in span)):
            raise BufferFileError(f"span {span!r} is not [offset, length]")
    return spans


def nbytes(descriptor) -> int:
    """How many bytes of data a descriptor's buffers hold."""
    return sum(length for _, length in spans_of(descriptor))


def dumps(obj, out_of_band: bool) -> tuple[bytes, list]:
    """``(pickle, buffers)``: the large buffers out of band when allowed and worth it.

    ``buffers`` is empty when everything is in the pickle (the usual small call).
    """
    if not out_of_band:
        return tracebacks.dumps(obj, PICKLE_PROTOCOL), []
    found: list = []
    data = tracebacks.dumps(obj, PICKLE_PROTOCOL, buffer_callback=found.append)
    if not found:
        return data, []
    try:
        raws = [b.raw() for b in found]
    except BufferError:  # a non-contiguous buffer: it can only go in band
        raws = None
    if raws is None or sum(r.nbytes for r in raws) < THRESHOLD:
        return tracebacks.dumps(obj, PICKLE_PROTOCOL), []
    return data, raws


def _take_spare(path) -> int | None:
    """Rename a spare of ``path``'s directory to ``path`` and open it, or None if there is none."""
    directory = os.path.dirname(path)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(SPARE_PREFIX) and check_spare(n)]
    except OSError:
        return None
    for name in names:
        try:
            os.rename(os.path.join(directory, name), path)  # atomic: one taker wins
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # another writer took it first
    return None


def check_spare(name: str) -> bool:
    return bool(_NAME.match(name)) and not name.endswith(".tmp")


def write(path, raws: list, use_spare: bool = True) -> list:
    """Write buffers into a new file (0600, never an existing one); returns their spans.

    ``use_spare``: write over a spare of the same directory when there is one.
    """
    fd = _take_spare(path) if use_spare else None
    spare = fd is not None
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    spans, offset = [], 0
    try:
        for raw in raws:
            offset = -(-offset // ALIGN) * ALIGN
            spans.append([offset, raw.nbytes])
            done = 0
            while done < raw.nbytes:  # one call moves at most ~2 GB on Linux
                done += os.pwrite(fd, raw[done:], offset + done)
            offset += raw.nbytes
        if spare:
            os.ftruncate(fd, offset)  # the spare's unused zeros are not part of the data
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return spans


def make_spare(directory, name: str, size: int) -> None:
    """A spare: ``size`` bytes of zeros, allocated and read once so its pages are cached.

    Reading the allocated (unwritten) blocks fills the page cache with zero pages
    without writing anything to disk.  ``sendfile`` to /dev/null reads them without
    copying them out, and (unlike a populated ``mmap``) releases the GIL, so a
    server thread doing this does not stall the server's loop.
    """
    tmp = os.path.join(directory, name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            offset = 0
            while offset < size:
                sent = os.sendfile(null, fd, offset, size - offset)
                if sent <= 0:
                    break
                offset += sent
        finally:
            os.close(null)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, os.path.join(directory, name))


def map_views(path, descriptor, writable: bool = True) -> list:
    """The descriptor's buffers as memoryviews of the mapped file (no copy).

    ``writable``: copy-on-write pages (what a receiver that unpickles wants); else
    read-only (the server, which only forwards the bytes).
    """
    spans = spans_of(descriptor)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise BufferFileError(f"cannot open the buffer file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BufferFileError(f"the buffer file {path} is not a regular file")
        for offset, length in spans:
            if offset + length > st.st_size:
                raise BufferFileError(f"the buffer file {path} ({st.st_size} bytes) is shorter "
                                      f"than its descriptor says ({offset + length} bytes)")
        if st.st_size == 0:
            return [memoryview(bytearray()) for _ in spans]
        mapped = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_COPY if writable else mmap.ACCESS_READ)
    finally:
        os.close(fd)
    whole = memoryview(mapped)
    return [whole[offset:offset + length] for offset, length in spans]
