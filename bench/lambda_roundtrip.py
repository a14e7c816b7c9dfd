"""The round trip of one small invoke through boto3 (the Lambda API) beside a notebook call.

``.venv/bin/python -m bench.lambda_roundtrip [N]``: starts a server of its own, deploys one
function, then times N sequential calls each way, warm, and prints the medians in ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(n: int = 300) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import ServerProcess
    from lambda_fixtures import client

    import jupyter_faas as faas

    server = ServerProcess(Path(tempfile.mkdtemp(prefix="faas-bench-"))).start()
    try:
        faas.connect(server.url, server.token)

        @faas.function(name="echo")
        def echo(event):
            return event

        lam = client(server)
        event = {"x": 1}
        for _ in range(20):  # warm both paths
            echo(event)
            lam.invoke(FunctionName="echo", Payload=b'{"x": 1}')["Payload"].read()
        rows = {}
        for label, call in [("notebook call echo(event)", lambda: echo(event)),
                            ("boto3 lam.invoke(...)", lambda: lam.invoke(
                                FunctionName="echo", Payload=b'{"x": 1}')["Payload"].read())]:
            times = []
            for _ in range(n):
                t = time.perf_counter()
                call()
                times.append((time.perf_counter() - t) * 1000)
            rows[label] = times
        for label, times in rows.items():
            q = statistics.quantiles(times, n=20)
            print(f"{label:<28} median {statistics.median(times):6.2f} ms   p95 {q[18]:6.2f} ms   (n={n})")
    finally:
        from jupyter_faas.client import discovery
        discovery.reset()
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
