"""The worker-side runtime of jupyter_faas: zygote, execution environment loop, wire frames.

Needs only the standard library and cloudpickle, and imports nothing from
``jupyter_faas``, tornado or IPython, so it can run on a remote Dask worker or
inside a sandbox (``tests/test_layering.py`` proves it).
"""
