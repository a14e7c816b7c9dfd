"""A real JupyterLab, a real FaaS server it discovers, and headless Chromium, for the panel tests.

JupyterLab and the FaaS server share temporary JUPYTER_CONFIG/DATA/RUNTIME dirs, so the
panel's server extension finds the FaaS server the way it would on a user's machine:
through the runtime file (no JUPYTER_FAAS_URL/TOKEN in JupyterLab's environment).
Chromium is Debian's (/usr/bin/chromium) driven by Python Playwright.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabProcess:
    """``jupyter lab`` on a free loopback port with the given Jupyter dirs."""

    def __init__(self, base: Path, env: dict):
        self.base = base
        self.token = "lab-token-" + base.name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in env.items() if k not in ("JUPYTER_FAAS_URL", "JUPYTER_FAAS_TOKEN")}
        self.proc = None

    def start(self) -> "LabProcess":
        bindir = Path(sys.executable).parent
        # The "news" toast would cover the panel in screenshots.
        subprocess.run([str(bindir / "jupyter"), "labextension", "disable",
                        "@jupyterlab/apputils-extension:announcements"],
                       env=self.env, check=True, capture_output=True)
        self.log = open(self.base / "lab.log", "wb")
        self.proc = subprocess.Popen(
            [str(bindir / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--ServerApp.token={self.token}",
             f"--ServerApp.root_dir={self.base}", f"--LabApp.workspaces_dir={self.base / 'workspaces'}"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: see {self.base / 'lab.log'}") from None
                time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not start: see {self.base / 'lab.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.log.close()


def browser_env() -> dict:
    # Playwright must never download a browser here: it drives the system Chromium.
    return dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
