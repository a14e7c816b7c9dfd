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


#: a server's scratch directory is ``<tmp>/jupyter_faas-<kind>-<server pid>-<random>``
_SCRATCH_PREFIX = "jupyter_faas-"
#: a directory without a pid in its name (made before they had one) is swept this old
_LEGACY_AGE_S = 600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scratch_dir(kind: str) -> str:
    """A private (0700) temporary directory for this server process, named with its pid, after
    sweeping those of ``kind`` whose server is gone (a SIGKILLed server cannot remove its own:
    :func:`sweep_scratch_dirs`)."""
    import tempfile
    sweep_scratch_dirs(kind)
    return tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{kind}-{os.getpid()}-")


def sweep_scratch_dirs(kind: str) -> list[str]:
    """Remove this user's ``jupyter_faas-<kind>-*`` directories under the temporary directory
    whose server process is gone: named with a pid that no process has, or (``direct`` only),
    made before directories had a pid, not changed for ten minutes and holding no socket that
    answers.
    Returns the paths removed."""
    import shutil
    import socket
    import tempfile
    import time
    root = tempfile.gettempdir()
    prefix = f"{_SCRATCH_PREFIX}{kind}-"
    removed = []
    try:
        names = [n for n in os.listdir(root) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != os.getuid() or not os.path.isdir(path) or os.path.islink(path):
            continue
        head = name[len(prefix):].split("-", 1)[0]
        if head.isdigit() and "-" in name[len(prefix):]:
            if _pid_alive(int(head)):
                continue
        else:
            # only a direct socket's tells whether its server lives (it answers)
            if kind != "direct" or time.time() - st.st_mtime < _LEGACY_AGE_S:
                continue
            sock_path = os.path.join(path, "direct.sock")
            if os.path.exists(sock_path):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(sock_path)
                    continue  # a live server of an older version listens there
                except OSError:
                    pass
                finally:
                    probe.close()
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
