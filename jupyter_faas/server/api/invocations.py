"""``/faas/api/invocations``: list (keyset pages), read, result, logs, cancel."""

from __future__ import annotations

from kernel_workers import buffers

from ...errors import InvalidParameter, ServerError
from ...vocabulary import QUEUED, RUNNING, TERMINAL
from .errors import BaseHandler


class InvocationsHandler(BaseHandler):
    def get(self):
        status = self.get_query_argument("status", None)
        if status and status not in TERMINAL | {QUEUED, RUNNING}:
            raise InvalidParameter(f"status={status!r} is not one of queued, running, "
                                   f"{', '.join(sorted(TERMINAL))}")
        before = self.get_query_argument("before", None)
        try:
            before = float(before) if before is not None else None
        except ValueError:
            raise InvalidParameter(f"before={before!r} is not a timestamp") from None
        before_id = self.get_query_argument("before_id", None)
        if before_id is not None and before is None:
            raise InvalidParameter("before_id needs before (the created_at of the same row)")
        limit = self.int_arg("limit", 100, 1, 1000)
        rows = self.service.list_invocations(
            function=self.get_query_argument("function", None), status=status,
            limit=limit, before=before, before_id=before_id)
        last = rows[-1] if len(rows) == limit else None
        self.finish({"invocations": rows,
                     "next": {"before": last["created_at"], "before_id": last["request_id"]}
                     if last else None})


class InvocationHandler(BaseHandler):
    def get(self, request_id):
        self.finish(self.service.get_invocation(request_id))


class InvocationResultHandler(BaseHandler):
    def get(self, request_id):
        row = self.service.get_invocation(request_id)
        result = self.service.stored_result(request_id) or b""
        descriptor = self.service.stored_result_buffers(request_id)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("X-Faas-Encoding", row["encoding"])
        self.set_header("X-Faas-Status", row["status"])
        if descriptor is None:
            self.finish(result)
            return
        # The pickle, then its out-of-band buffers (whose lengths the header lists, in order).
        if self.service.files is None:
            raise ServerError(f"the result of {request_id} is in a buffer file, but this server runs "
                              f"with share_buffers off; start it with share_buffers on to read it")
        try:
            views = self.service.files.views(descriptor)
        except buffers.BufferFileError as exc:
            raise ServerError(f"the result of {request_id} is lost: {exc}") from exc
        self.set_header("X-Faas-Buffers", ",".join(str(v.nbytes) for v in views))
        self.write(result)
        for view in views:
            self.write(bytes(view))  # tornado writes bytes only; this is the remote path anyway
        self.finish()


class InvocationLogsHandler(BaseHandler):
    def get(self, request_id):
        self.service.get_invocation(request_id)
        after = self.int_arg("after", 0)
        limit = self.int_arg("limit", 10000, 1, 100000)
        logs = self.service.invocation_logs(request_id, after, limit)
        self.finish({"logs": logs})


class InvocationCancelHandler(BaseHandler):
    async def post(self, request_id):
        self.service.get_invocation(request_id)
        cancelled = await self.service.cancel_and_wait(request_id)
        self.finish({"request_id": request_id, "cancelled": cancelled})
