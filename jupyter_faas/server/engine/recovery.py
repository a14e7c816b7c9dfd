"""Recovery after a restart: nothing accepted is lost.

Every invocation was a row before it ran.  A ``queued`` row never started: it is queued
again (its payload and argument buffers are in the store).  A ``running`` row may have
run partly (a side effect may have happened), so it is not run again: it is failed with
``Runtime.ServerStopped``, and the user decides.  Buffer files no row names are swept.
"""

from __future__ import annotations

from ..model import FAILED, LATEST, QUEUED
from .invocation import Invocation


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

