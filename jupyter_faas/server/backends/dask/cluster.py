"""The Dask cluster the backend talks to: an address, or a LocalCluster it starts and owns.

``dask_scheduler`` is a scheduler address (``tcp://host:8786``) or ``local:N`` (a
``distributed.LocalCluster`` of N single-threaded worker processes, started in the
server's process and stopped with it, for trying the backend on one machine).
"""

from __future__ import annotations

import logging

log = logging.getLogger("jupyter_faas.server")


def parse(address: str) -> tuple[str, int | None]:
    """``("local", N)`` for ``local:N``, else ``(address, None)``."""
    if address.startswith("local:") or address == "local":
        _, _, n = address.partition(":")
        try:
            workers = int(n or 2)
        except ValueError:
            raise ValueError(f"dask_scheduler={address!r}: write local:N with N the number of "
                             f"worker processes, or a scheduler address like tcp://host:8786") from None
        if workers < 1:
            raise ValueError(f"dask_scheduler={address!r}: a local cluster needs at least one worker")
        return "local", workers
    return address, None


async def open_cluster(address: str, connect_timeout: float):
    """``(client, cluster or None)``: an asynchronous ``distributed.Client`` on this loop."""
    from distributed import Client, LocalCluster

    where, workers = parse(address)
    cluster = None
    if where == "local":
        cluster = await LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=":0", asynchronous=True)
        where = cluster.scheduler_address
    try:
        client = await Client(where, asynchronous=True, timeout=connect_timeout,
                              set_as_default=False)
    except BaseException:
        if cluster is not None:
            await cluster.close()
        raise
    return client, cluster
