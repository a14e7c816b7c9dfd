"""Where the server keeps its data and how clients find it (Jupyter's dirs, so tests isolate
themselves with JUPYTER_DATA_DIR and JUPYTER_RUNTIME_DIR)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir


def data_dir() -> Path:
    return Path(jupyter_data_dir()) / "faas"


def runtime_file() -> Path:
    return Path(jupyter_runtime_dir()) / "jupyter_faas-server.json"


def write_runtime_file(info: dict) -> Path:
    """Write the server's URL and token readable by this user only (mode 0600)."""
    path = runtime_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)
    return path


def read_runtime_file() -> dict | None:
    try:
        return json.loads(runtime_file().read_text())
    except (OSError, ValueError):
        return None


def remove_runtime_file(pid: int) -> None:
    info = read_runtime_file()
    if info and info.get("pid") == pid:
        try:
            runtime_file().unlink()
        except OSError:
            pass
