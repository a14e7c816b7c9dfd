"""The Dask backend: invocations in ``kernel_workers`` environments on the workers of a Dask cluster.

Imported only when the server is configured for Dask (``distributed`` is an optional
dependency: ``pip install jupyter_faas[dask]``).
"""

from .backend import DaskBackend
from .cluster import parse

__all__ = ["DaskBackend", "parse"]
