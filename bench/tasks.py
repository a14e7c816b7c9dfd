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


# ---- W6: a function whose INIT is slow and large (a model loaded once), fanned out -----------
#: what W6's INIT made, in this process (a worker, an environment, a template)
_W6_MODEL = None


def w6_init(init_s: float, alloc_mb: int):
    """INIT: allocate (and touch) ``alloc_mb`` MB, then wait out ``init_s`` seconds in all."""
    global _W6_MODEL
    started = time.perf_counter()
    _W6_MODEL = b"\x01" * (alloc_mb * 1024 * 1024)
    time.sleep(max(0.0, init_s - (time.perf_counter() - started)))


def w6_item(item_s: float):
    """One item: reads the model, works ``item_s`` seconds; says which process ran it."""
    import os
    assert _W6_MODEL is not None, "INIT did not run in this process"
    time.sleep(item_s)
    return os.getpid(), os.getppid(), len(_W6_MODEL)


def make_w6(tag: str, init_s: float, alloc_mb: int):
    """W6's INIT and handler for jupyter_faas; ``tag`` makes each a new version."""
    def load():
        w6_init(init_s, alloc_mb)

    def handler(item_s):
        return (tag,) + w6_item(item_s)
    return load, handler


def pss_mb(pids) -> tuple[float, float]:
    """(sum of the processes' PSS, the largest RSS of one of them), in MB, from smaps_rollup."""
    total, largest = 0.0, 0.0
    for pid in set(pids):
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
        total += fields.get("Pss", 0.0)
        largest = max(largest, fields.get("Rss", 0.0))
    return total, largest
