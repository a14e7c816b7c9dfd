"""Run every workload on one system, in this process, and write its results as JSON.

The runner starts one of these per system, so a framework that leaks threads,
hangs or crashes cannot disturb the next one, and each starts from a clean process.
Usage: ``python -m bench.one SYSTEM SIZES_JSON OUT_JSON``.
"""

from __future__ import annotations

import json
import sys
import time
import traceback


def make(name: str):
    if name == "jupyter_faas":
        from .faas import Faas
        return Faas()
    from .peers import PEERS
    return PEERS[name]()


def main(argv=None) -> int:
    name, sizes_json, out = (argv or sys.argv[1:])[:3]
    sizes = json.loads(sizes_json)
    record = {"system": name}
    try:
        system = make(name)
        if name == "jupyter_faas" and sizes.get("s_invocations") and "S" in sizes.get("workloads", ["S"]):
            from .faas import seed_store
            record["seed_s"] = seed_store(system.store_path, sizes["s_invocations"])
        started = time.perf_counter()
        system.start()
        record["start_s"] = time.perf_counter() - started
    except ImportError as exc:
        record["skipped"] = f"not installed ({exc}); `pip install -e .[bench]` installs the peers"
    except Exception as exc:  # noqa: BLE001 - a peer that cannot start is reported, not fatal
        record["skipped"] = f"failed to start: {type(exc).__name__}: {exc}"
        traceback.print_exc()
        try:
            system.close()  # whatever it did start must not outlive this run
        except Exception:  # noqa: BLE001
            pass
    else:
        from .workloads import run_all
        try:
            record["results"] = run_all(system, sizes, scale_too=name == "jupyter_faas")
        finally:
            try:
                system.close()
            except Exception:  # noqa: BLE001 - the numbers are taken; closing is best effort
                traceback.print_exc()
    with open(out, "w") as f:
        json.dump(record, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
