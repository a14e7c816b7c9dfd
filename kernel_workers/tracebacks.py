"""What a remote traceback shows: the user's frames, with their real file, line and source.

Two halves, one on each side of the pickle:

- Code objects shipped by value travel as :func:`load_code` calls (:func:`dumps`,
  used for functions, arguments and results alike, makes them): the code
  marshalled whole, so it keeps its ``co_filename`` whatever cloudpickle does
  (3.1.3 renames every by-value code object's file to ``"<dynamic-code>"``), and,
  for a file that is not on disk (a notebook cell), its source lines, which
  :func:`load_code` puts in :mod:`linecache` here.  A traceback then reads as it
  would locally: ``File "/tmp/ipykernel_…/….py", line 6, in score`` and the line.
- :func:`error_fields` formats an invocation's error from the first frame of the
  user's code: the runtime's own frames (and asyncio's, for an async handler) are
  left out.

Not covered: code pickled by reference (an installed package's) needs nothing, and
frames of code that some other pickler shipped keep whatever name it gave them.
"""

from __future__ import annotations

import collections
import io
import linecache
import marshal
import os
import pickle
import traceback
import types

import cloudpickle

#: frames of these directories that come before the user's code are the runtime's, not theirs
_RUNTIME_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
                 os.path.join(os.path.dirname(os.path.abspath(os.__file__)), "asyncio") + os.sep)
#: marshal format: version 2 writes no back-references, so the same code gives the same bytes
#: (the function's version is the hash of its pickle)
MARSHAL_VERSION = 2


def dump_code(code: types.CodeType) -> bytes:
    return marshal.dumps(code, MARSHAL_VERSION)


def load_code(data: bytes, lines: tuple | None = None) -> types.CodeType:
    """A code object shipped by value; ``lines``: its file's source when the file is not on disk."""
    code = marshal.loads(data)
    if lines is not None and code.co_filename not in linecache.cache:
        # mtime None: linecache.checkcache() leaves the entry alone (there is no file to check)
        linecache.cache[code.co_filename] = (sum(map(len, lines)), None, list(lines),
                                             code.co_filename)
    return code


def _reduce_code(code: types.CodeType):
    return load_code, (dump_code(code), _source(code.co_filename))


#: file name -> (its linecache entry, its lines as shipped): the same tuple each time, so a
#: pickle carries a cell's lines once however many of its code objects it holds
_SOURCES: dict[str, tuple] = {}


def _source(filename: str) -> tuple | None:
    """The lines of a file that is not on disk (a notebook cell), from this process's linecache."""
    entry = linecache.cache.get(filename)
    known = _SOURCES.get(filename)
    if known is not None and known[0] is entry:
        return known[1]
    lines = None if os.path.isfile(filename) else tuple(linecache.getlines(filename)) or None
    _SOURCES[filename] = (linecache.cache.get(filename), lines)
    return lines


class Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler, but code shipped by value keeps its file name and brings its source."""

    dispatch_table = collections.ChainMap({types.CodeType: _reduce_code},
                                          cloudpickle.Pickler.dispatch_table)


#: types whose pickle is the same from pickle and cloudpickle (exact types: a subclass may be
#: a class of the notebook's, which only cloudpickle ships by value)
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS = frozenset({tuple, list, dict})


def _plain(obj, depth: int = 3) -> bool:
    """Small data of builtin types only: ``pickle`` makes its bytes in a tenth of the time of
    building a cloudpickle pickler (a map's arguments and results are mostly such)."""
    kind = type(obj)
    if kind in _PLAIN:
        return True
    if kind not in _CONTAINERS or depth == 0 or len(obj) > 16:
        return False
    # loops, not all() over a generator: this runs for every map item, and a generator per
    # level was a fifth of a map's client time
    if kind is dict:
        for k, v in obj.items():
            if type(k) not in _PLAIN or not _plain(v, depth - 1):
                return False
        return True
    for item in obj:
        if not _plain(item, depth - 1):
            return False
    return True


def dumps(obj, protocol: int, buffer_callback=None) -> bytes:
    """``cloudpickle.dumps``, with :class:`Pickler` (plain small data: ``pickle.dumps``, the same bytes)."""
    if _plain(obj):
        return pickle.dumps(obj, protocol)
    with io.BytesIO() as file:
        Pickler(file, protocol, buffer_callback).dump(obj)
        return file.getvalue()


def user_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` from the first frame that is not the runtime's (or asyncio's, which awaits for it).

    None when no frame is the user's (a handler called with the wrong arguments): the
    error's type and message then stand alone, with nothing of the runtime's.
    """
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIRS):
        tb = tb.tb_next
    return tb


#: an error's message and its stack trace at most (characters each): they travel in frame headers
#: and journal records (at most 1 MB: wire.MAX_HEADER_BYTES); the caller's exception, pickled in
#: the body, keeps the whole message
ERROR_TEXT_CHARS = 64 * 1024


def error_fields(exc: BaseException, stage: str) -> dict:
    """An invocation's error as the runtime reports it; the user's code starts its stackTrace.

    ``{errorType, errorMessage, errorModule, stackTrace: [str], stage}`` (Lambda's error
    shape, plus ``stage``), with the message and the trace cut to :data:`ERROR_TEXT_CHARS`
    each (:func:`bounded`)."""
    tb = user_traceback(exc.__traceback__) if stage in ("run", "init_code") else exc.__traceback__
    return bounded({
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "errorModule": type(exc).__module__,
        "stackTrace": traceback.format_exception(type(exc), exc, tb),
        "stage": stage,
    })


def bounded(fields: dict) -> dict:
    """``fields`` with ``errorMessage`` and the whole of ``stackTrace`` at most ERROR_TEXT_CHARS
    characters each, saying what was cut (an exception with a megabyte message once made a frame
    the server refused, reported as the environment killed from outside)."""
    message = fields.get("errorMessage")
    if isinstance(message, str) and len(message) > ERROR_TEXT_CHARS:
        fields["errorMessage"] = _cut(message)
    trace = fields.get("stackTrace")
    if isinstance(trace, list) and sum(len(str(line)) for line in trace) > ERROR_TEXT_CHARS:
        kept, room = [], ERROR_TEXT_CHARS
        for line in (str(line) for line in trace):
            if len(line) > room:
                kept.append(_cut(line, room))
                break
            kept.append(line)
            room -= len(line)
        fields["stackTrace"] = kept
    return fields


def _cut(text: str, limit: int = ERROR_TEXT_CHARS) -> str:
    return (f"{text[:limit]} …[{len(text) - limit:,} more characters cut here; the exception "
            f"the caller gets has them all]")
