"""Recovery after a restart: nothing accepted is lost.

Every invocation was a row before it ran.  A ``queued`` row never started: it is queued
again (its payload and argument buffers are in the store).  A ``running`` row may have
run partly (a side effect may have happened), so it is not run again: it is failed with
``Runtime.ServerStopped``, and the user decides.  Buffer files no row names are swept,
at start and then periodically (those no live invocation names either, untouched a while:
a client that died between writing its argument's file and sending the call).
"""

from __future__ import annotations

import asyncio
import logging

from kernel_workers.buffers import result_name

from ...errors import InvalidParameter
from ..model import FAILED, LATEST, QUEUED
from .invocation import Invocation, check_group

log = logging.getLogger("jupyter_faas.server")


def recover(service) -> dict:
    requeued = failed = 0
    for row in service.store.unfinished():
        if row["status"] == QUEUED:
            function = service.store.get_function(row["function"], row["version"])
            if function is not None:
                # run as the Lambda version it was accepted as ($LATEST, or the published one)
                function["lambda_version"] = row.get("lambda_version") or LATEST
                rid = row["request_id"]
                inv = Invocation(rid, function, service.store.get_payload(rid), row["encoding"],
                                 row["invocation_type"], True, row["created_at"],
                                 service.store.get_payload_buffers(rid))
                if row.get("map_group"):
                    try:  # its map's concurrency holds on this server too
                        inv.group = check_group(row["map_group"])
                    except InvalidParameter:
                        log.warning("invocation %s: its stored map group %r is not [id, limit]; "
                                    "queued without it", rid, row["map_group"])
                service._enqueue(inv)
                requeued += 1
                continue
        error = {"errorType": "Runtime.ServerStopped",
                 "errorMessage": "the FaaS server stopped while this invocation was "
                                 f"{row['status']}; it may have run partly. Invoke it again."}
        service.store.finish_invocation(row["request_id"], {
            "status": FAILED, "ended_at": service.clock.time(), "error": error,
            "error_type": error["errorType"]}, None, [])
        failed += 1
    swept = service.files.sweep(service.store.buffer_files()) if service.files is not None else 0
    return {"requeued": requeued, "failed": failed, "stale_buffer_files": swept}



def live_buffer_files(service) -> set:
    """The buffer files of the invocations the service holds (queued, running, ending)."""
    live = set()
    for inv in (*service.active.values(), *service.ending.values()):
        if inv.buffers is not None:
            live.add(inv.buffers.get("file"))
        live.add(result_name(inv.request_id))
    return live


async def sweep_orphans(service, older_than: float) -> int:
    """Delete the buffer files no row and no live invocation names, untouched for ``older_than``
    seconds; the store is read only when there is such a file."""
    stale = service.files.stale(older_than, live_buffer_files(service))
    if not stale:
        return 0
    named = service.store.buffer_files()
    stale = [name for name in stale if name not in named]
    removed = await asyncio.get_running_loop().run_in_executor(None, service.files.delete, stale)
    if removed:
        log.info("deleted %d buffer files no invocation owned (untouched for %g s)", removed, older_than)
    return removed


async def sweep_periodically(service, older_than: float) -> None:
    """:func:`sweep_orphans` every ``min(60, older_than)`` seconds, for the server's life."""
    while True:
        await asyncio.sleep(min(60.0, older_than))
        try:
            await sweep_orphans(service, older_than)
        except Exception:  # noqa: BLE001 - a sweep that failed is tried again at the next turn
            log.exception("could not sweep the buffer directory")
