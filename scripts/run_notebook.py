"""Execute a notebook headless with a real kernel and print each cell and what it printed."""

import sys
from pathlib import Path

import nbformat
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
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute()
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        print(f"--- In [{i + 1}]:\n{cell.source}")
        out = "".join(text_of(o) for o in cell.get("outputs", []))
        if out.strip():
            print(f"--- Out:\n{out.rstrip()}")
    print(f"\nRan {path}: every cell succeeded.")


if __name__ == "__main__":
    main(sys.argv[1])
