"""Execute a notebook headless with a real kernel and print each cell and what it printed.

The kernel talks to this process over IPC (Unix sockets in a private temporary directory),
not TCP: nothing else needs to reach it, and a TCP kernel without CurveZMQ keys warns on
stderr that it is unencrypted (ipykernel 7).
"""

import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient


def text_of(output) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.traceback)
    data = output.get("data", {})
    return data.get("text/plain", "") + ("\n" if data.get("text/plain") else "")


def main(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="faas-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        client = NotebookClient(nb, km=km, timeout=300,
                                resources={"metadata": {"path": str(Path(path).parent)}})
        try:
            client.execute()
        finally:
            if km.has_kernel:  # a kernel manager passed in is not shut down by nbclient
                km.shutdown_kernel()
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        print(f"--- In [{i + 1}]:\n{cell.source}")
        out = "".join(text_of(o) for o in cell.get("outputs", []))
        if out.strip():
            print(f"--- Out:\n{out.rstrip()}")
    print(f"\nRan {path}: every cell succeeded.")


if __name__ == "__main__":
    main(sys.argv[1])
