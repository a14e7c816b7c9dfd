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

Spares: the server keeps a few ``spare-<bytes>-<random>`` files whose pages are
already in the page cache: zeros, or a spent argument's file that no process maps
any more (the server recycles those).  A writer takes one by renaming it to its own
name and writes over it, zeros in the alignment gaps and the rest cut off, so no byte
of what it held survives: overwriting cached pages runs at
memory speed, while a new file must first get fresh pages from the kernel, which on
a VM can cost more than the copy itself.  The server makes new spares in the
background.  A client takes the smallest spare its data fits (the name says its
size); an environment asks the server for its result's file instead (see
:mod:`kernel_workers.runtime`), so the page cache it writes was charged to the
server, not to the function's memory.  When none fits, a spare still being made
(``spare-<bytes>-<random>.partial``: allocated, its pages being read in) is taken
rather than a new file: the pages already read in are cached, and its maker goes
on reading the rest in ahead of the writer.  A new file is given its size before
it is written, so the server, which watches the directory, sees a large argument
coming as its writing starts.

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
_SPARE = re.compile(r"spare-([0-9]{1,15})-[0-9a-f]{1,32}\Z")
#: a spare being made (its pages being read in): taken when no finished spare fits
PARTIAL_SUFFIX = ".partial"
_PARTIAL = re.compile(r"spare-([0-9]{1,15})-[0-9a-f]{1,32}\.partial\Z")
#: A spare's pages are read in this many bytes at a time, so its maker can pause in between.
READ_CHUNK = 2 << 20


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


def spare_name(size: int, tag: str) -> str:
    """The name of a spare of ``size`` bytes (``tag``: random, so names never collide)."""
    return check_name(f"{SPARE_PREFIX}{size}-{tag}")


def spare_size(name: str) -> int | None:
    """The size a spare's name says it has, or None if ``name`` is not a (finished) spare."""
    match = _SPARE.match(name)
    return int(match.group(1)) if match else None


def partial_name(size: int, tag: str) -> str:
    """The name of a spare of ``size`` bytes while it is being made."""
    return check_name(f"{SPARE_PREFIX}{size}-{tag}{PARTIAL_SUFFIX}")


def check_spare(name: str) -> bool:
    return spare_size(name) is not None


def spares_in(directory) -> list:
    """``[(size, name)]`` of the spares in ``directory``, smallest first."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted((size, n) for n in names if n.startswith(SPARE_PREFIX)
                  and (size := spare_size(n)) is not None)


def best_spares(spares: list, nbytes: int) -> list:
    """The order to try spares in for ``nbytes``: those it fits, smallest first; then the
    others, largest first (a spare too small still spares the writer part of its pages)."""
    fits = [s for s in spares if s[0] >= nbytes]
    return fits + sorted((s for s in spares if s[0] < nbytes), reverse=True)


def partials_in(directory, nbytes: int) -> list:
    """Names of the spares being made in ``directory`` that ``nbytes`` fits, oldest first
    (the furthest along)."""
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                match = _PARTIAL.match(entry.name)
                if match and int(match.group(1)) >= nbytes:
                    try:
                        found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
                    except OSError:
                        continue  # taken meanwhile
    except OSError:
        return []
    return [name for _, name in sorted(found)]


def take_spare(directory, path, nbytes: int, fitting_only: bool = False) -> bool:
    """Rename the best spare of ``directory`` for ``nbytes`` to ``path``; False if there is none.

    The order: finished spares ``nbytes`` fits (smallest first); then spares being made that
    it fits (their cached pages, and their maker's reading ahead, beat all-new pages); then,
    unless ``fitting_only``, finished ones too small, largest first."""
    spares = best_spares(spares_in(directory), nbytes)
    names = [name for size, name in spares if size >= nbytes] + partials_in(directory, nbytes)
    if not fitting_only:
        names += [name for size, name in spares if size < nbytes]
    for name in names:
        try:
            os.rename(os.path.join(directory, name), path)  # atomic: one taker wins
            return True
        except OSError:
            continue  # another writer took it first
    return False


def _take_spare(path, nbytes: int) -> int | None:
    """Rename a spare of ``path``'s directory to ``path`` and open it, or None if there is none."""
    while take_spare(os.path.dirname(path), path, nbytes):
        try:
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
    return None


def file_size(raws: list) -> int:
    """How long the file holding ``raws`` is (each buffer aligned to :data:`ALIGN`)."""
    offset = 0
    for raw in raws:
        offset = -(-offset // ALIGN) * ALIGN + raw.nbytes
    return offset


def write(path, raws: list, use_spare: bool = True, existing: bool = False) -> list:
    """Write buffers into a new file (0600, never an existing one); returns their spans.

    ``use_spare``: write over a spare of the same directory when there is one.
    ``existing``: write over ``path``, a file the server made for these buffers (a spare
    it renamed, or one it made); what is past the data is cut off.
    """
    fd = None
    if existing:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            pass  # gone meanwhile: a new file, as without one
    elif use_spare:
        fd = _take_spare(path, file_size(raws))
    spare = fd is not None
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Its size first: the server (watching the directory) sees a large argument
            # coming now, and starts making spares while this one gets its new pages.
            os.ftruncate(fd, file_size(raws))
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
    spans, offset = [], 0
    try:
        for raw in raws:
            start = -(-offset // ALIGN) * ALIGN
            if spare and start > offset:
                # A spare may be a spent argument's file: no byte of it may stay in the gaps.
                os.pwrite(fd, bytes(start - offset), offset)
            offset = start
            spans.append([offset, raw.nbytes])
            done = 0
            while done < raw.nbytes:  # one call moves at most ~2 GB on Linux
                done += os.pwrite(fd, raw[done:], offset + done)
            offset += raw.nbytes
        if spare:
            os.ftruncate(fd, offset)  # the spare's rest is not part of the data
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return spans


def make_spare(directory, name: str, size: int, partial: str | None = None, pace=None) -> bool:
    """A spare: ``size`` bytes of zeros, allocated and read once so its pages are cached.

    Reading the allocated (unwritten) blocks fills the page cache with zero pages
    without writing anything to disk.  ``sendfile`` to /dev/null reads them without
    copying them out, and (unlike a populated ``mmap``) releases the GIL, so a
    server thread doing this does not stall the server's loop.

    ``partial``: the name it has while its pages are read in (:data:`READ_CHUNK` at a time,
    ``pace()`` called before each), under which a writer may take it; then False is
    returned (the writer has the file), else True once it is ``name``.
    """
    tmp = os.path.join(directory, name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)  # before it is takeable: never grows a taken file
        if partial is not None:
            os.rename(tmp, os.path.join(directory, partial))
            tmp = os.path.join(directory, partial)
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            offset = 0
            while offset < size:
                if pace is not None:
                    pace()
                chunk = size - offset if partial is None else min(READ_CHUNK, size - offset)
                sent = os.sendfile(null, fd, offset, chunk)
                if sent <= 0:
                    break  # a writer took it and cut it to its data
                offset += sent
        finally:
            os.close(null)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass  # a writer took it: the file is the writer's now
        raise
    os.close(fd)
    try:
        os.rename(tmp, os.path.join(directory, name))
    except FileNotFoundError:
        if partial is None:
            raise
        return False  # a writer took it before it was finished
    return True


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
