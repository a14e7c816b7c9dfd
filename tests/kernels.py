"""A real kernel driven the way a frontend drives it: execute, read iopub, click widgets.

nbclient runs cells one at a time and cannot act while a cell runs; these tests
need to click a widget's button *during* a blocking cell, so they speak the
Jupyter messaging protocol directly (jupyter_client).
"""

from __future__ import annotations

import queue
import time

from jupyter_client import KernelManager


class RawKernel:
    def __init__(self, env: dict, cwd: str):
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.widgets: dict[str, dict] = {}   # comm_id -> {"model": name, "state": {...}}
        self.outputs: dict[str, list] = {}   # parent msg_id -> iopub messages
        self.idle: set[str] = set()
        self.log: list[tuple[float, dict]] = []  # (arrival time, message) of every iopub message

    def execute(self, code: str) -> str:
        return self.kc.execute(code, store_history=False)

    def pump(self, until, timeout: float) -> None:
        """Read iopub until ``until()`` is true; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the kernel did not get there in time")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self._take(msg)

    def _take(self, msg: dict) -> None:
        self.log.append((time.monotonic(), msg))
        kind = msg["msg_type"]
        content = msg["content"]
        parent = msg.get("parent_header", {}).get("msg_id")
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = content["data"]["state"]
            self.widgets[content["comm_id"]] = {"model": state.get("_model_name"), "state": dict(state)}
        elif kind == "comm_msg":
            data = content.get("data", {})
            widget = self.widgets.get(content["comm_id"])
            if widget is not None and data.get("method") in ("update", "echo_update"):
                widget["state"].update(data.get("state", {}))
        elif kind == "status" and content["execution_state"] == "idle" and parent:
            self.idle.add(parent)
        if parent:
            self.outputs.setdefault(parent, []).append(msg)

    def run(self, code: str, timeout: float = 60) -> tuple[str, dict | None]:
        """Execute and wait; returns (stdout + displayed text, the error content or None)."""
        msg_id = self.execute(code)
        self.pump(lambda: msg_id in self.idle, timeout)
        return self.text(msg_id), self.error(msg_id)

    def text(self, msg_id: str) -> str:
        parts = []
        for msg in self.outputs.get(msg_id, []):
            if msg["msg_type"] == "stream":
                parts.append(msg["content"]["text"])
            elif msg["msg_type"] in ("execute_result", "display_data", "update_display_data"):
                parts.append(msg["content"]["data"].get("text/plain", ""))
        return "".join(parts)

    def error(self, msg_id: str) -> dict | None:
        errs = [m["content"] for m in self.outputs.get(msg_id, []) if m["msg_type"] == "error"]
        return errs[0] if errs else None

    def find(self, model: str, **match) -> str | None:
        """The comm id of the newest widget of ``model`` whose state has ``match``."""
        found = None
        for comm_id, w in self.widgets.items():
            if w["model"] == model and all(w["state"].get(k) == v for k, v in match.items()):
                found = comm_id
        return found

    def send_comm(self, comm_id: str, data: dict) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    def click(self, comm_id: str) -> None:
        """What the browser sends when the button is clicked."""
        self.send_comm(comm_id, {"method": "custom", "content": {"event": "click"}})

    def set_value(self, comm_id: str, value) -> None:
        self.send_comm(comm_id, {"method": "update", "state": {"value": value}, "buffer_paths": []})

    def kill(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
