"""The work every system runs: tiny, importable functions shared by all adapters.

They live in an importable module (the harness puts the repository root on
PYTHONPATH) so every peer can pickle them by reference; jupyter_faas ships them
by value, as it would a notebook's function.
"""

from __future__ import annotations

import time

#: Arrays made once per worker process, so W4's result direction measures transfer, not memset.
_CACHE: dict = {}


def inc(x):
    return x + 1


def noop(x):
    return None


def nap(seconds):
    time.sleep(seconds)
    return seconds


def nbytes(array):
    return int(array.nbytes)


def big_result(n):
    array = _CACHE.get(n)
    if array is None:
        import numpy
        array = _CACHE[n] = numpy.ones(n, dtype="uint8")
    return array


def uses_numpy(x):
    import numpy
    return float(numpy.arange(3).sum()) + x


def chatty(n):
    for i in range(n):
        print("log line", i)
    return n


def make_cold(tag: str, with_numpy: bool):
    """A function whose code differs per ``tag``, so deploying it makes a new version (a cold start)."""
    if with_numpy:
        def cold(x):
            import numpy
            return (tag, float(numpy.arange(3).sum()) + x)
    else:
        def cold(x):
            return (tag, x + 1)
    return cold
