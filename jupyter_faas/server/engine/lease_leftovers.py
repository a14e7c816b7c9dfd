"""At start: the journals of leases a stopped server left (their environments died with it).

Folded before ``recover()`` (app.py), so what leased environments ran is stored before the
store's own ``running`` rows are settled.  The records are those of :mod:`.leases` (and
:mod:`kernel_workers.lease`): an end is stored as the environment recorded it, a start without
an end is failed ``Runtime.ServerStopped``, as a ``running`` row is.
"""

from __future__ import annotations

import logging
import os
import time

from kernel_workers import journal

from ..model import FAILED, LATEST
from .leases import FOLD_RECORDS, Lease, _flat, _num, _summary, _text, _with_lines

log = logging.getLogger("jupyter_faas.server")


def fold_leftovers(service, directory: str) -> dict:
    """At start: fold the journals a server that stopped left (its leased environments died
    with it).  An end is stored as the environment recorded it; a start without an end is failed
    ``Runtime.ServerStopped``, as a ``running`` row is.  Returns counts: ended, failed."""
    ended = failed = 0
    for path in journal.leftovers(directory):
        reader = journal.Reader(path)
        starts, lines, shared = {}, {}, {}
        while True:  # in batches, as a running server folds (a journal can hold a long backlog)
            try:
                records = reader.read(FOLD_RECORDS)
            except Exception as exc:  # noqa: BLE001 - a corrupt journal must not stop the server
                log.error("could not read the journal %s (%s); its invocations are lost", path, exc)
                records = []
            rows = []
            for header, body in records:
                header = _flat(header)
                rid = header.get("request_id")
                if header["k"] == "lease":  # what its starts share (function, version, memory)
                    shared = {k: header.get(k) for k in ("function", "version", "lambda_version", "memory_mb")}
                elif header["k"] == "lines" and isinstance(rid, str):
                    lines.setdefault(rid, []).extend(journal.parse_lines(body))
                elif header["k"] == "start" and isinstance(rid, str):
                    starts[rid] = {**shared, **header}
                elif header["k"] == "end" and rid in starts:
                    if rid in lines:
                        header = _with_lines(header, lines.pop(rid))
                    start = starts.pop(rid)
                    function = service.store.get_function(_text(start.get("function"), ""), start.get("version"))
                    if function is None or not header.get("clean"):
                        starts[rid] = start  # judged below as stopped: the server could not judge it
                        continue
                    function["lambda_version"] = _text(start.get("lambda_version"), LATEST)
                    lease = Lease("recovered", _Recovered(None), function)
                    rows.append(service._ended_row(lease, start, header, body)[:3])
            if rows:
                service.store.add_ended(rows, skip_known=True)
                ended += len(rows)
            if len(records) < FOLD_RECORDS:
                break
        reader.close()
        stopped = []
        for rid, start in starts.items():
            error = {"errorType": "Runtime.ServerStopped",
                     "errorMessage": "the FaaS server stopped while this invocation was running; "
                                     "it may have run partly. Invoke it again."}
            stopped.append(({"request_id": rid, "function": _text(start.get("function"), "?"),
                             "version": start.get("version"), "invocation_type": "RequestResponse",
                             "encoding": _text(start.get("encoding"), "pickle"), "status": FAILED,
                             "error": error, "error_type": error["errorType"],
                             "created_at": _num(start.get("t")), "started_at": _num(start.get("t")),
                             "ended_at": time.time(), "input_summary": _summary(start),
                             "memory_size_mb": start.get("memory_mb")}, None, []))
        service.store.add_ended(stopped, skip_known=True)
        failed += len(stopped)
        try:
            os.unlink(path)
        except OSError:
            pass
    return {"ended": ended, "failed": failed}


class _Recovered:
    """Stands for the lease handle of a journal folded at start (only its environment's id)."""

    class _Env:
        def __init__(self, env_id):
            self.id = env_id

    def __init__(self, env_id):
        self.env = self._Env(env_id)
