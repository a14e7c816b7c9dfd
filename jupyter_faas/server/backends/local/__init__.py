"""The local backend: a zygote, execution environments forked from it, memory limits
(cgroup v1 or a watchdog) and the buffer files large arrays travel through."""

from .buffer_files import BufferFiles
from .memory import make_enforcer
from .pool import Pool

__all__ = ["BufferFiles", "Pool", "make_enforcer"]
