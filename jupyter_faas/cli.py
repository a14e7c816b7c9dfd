"""``jupyter faas serve|status|stop|ls|invoke|logs|aws-env`` (also ``python -m jupyter_faas ...``).

``serve`` is the traitlets application (so ``--FaaSServer.x=...`` and
``jupyter_faas_config.py`` work); the others are thin REST clients.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from . import errors, paths


def _connection():
    from .client.connection import Connection
    if os.environ.get("JUPYTER_FAAS_URL"):
        return Connection(os.environ["JUPYTER_FAAS_URL"], os.environ.get("JUPYTER_FAAS_TOKEN", ""))
    info = paths.read_runtime_file()
    if not info:
        raise errors.ServerError("no FaaS server is running for this user (no runtime file at "
                                 f"{paths.runtime_file()}); start one with `jupyter faas serve`")
    return Connection(info["url"], info["token"])


def cmd_status(args) -> int:
    """Which server this user's clients use, and what it is doing; exit 1 when none runs."""
    try:
        conn = _connection()
        status = conn.request("GET", "/faas/api/status")
    except errors.FaaSError as exc:
        print(f"no FaaS server is answering: {exc}")
        return 1
    backends = status.get("backends", {})
    print(f"FaaS server {status['version']} at {conn.url} (pid {status['pid']}, "
          f"up {status['uptime_s']:.0f} s)")
    print(f"  invocations: {status['running']} running, {status['queued']} queued; memory "
          f"{status['memory_in_use_mb']} of {status['memory_budget_mb']} MB in use")
    for name, stats in backends.items():
        default = " (default)" if name == status.get("default_backend") else ""
        extra = (f", memory limits by {stats['memory_enforcement']}"
                 if stats.get("memory_enforcement") else "")
        print(f"  backend {name}{default}: {stats.get('environments', 0)} environments{extra}")
    if status.get("direct_socket"):
        print(f"  sync calls on this machine: {status['direct_socket']}")
    provisioned = status.get("provisioned") or []
    if provisioned:
        print("  provisioned concurrency (environments requested / ready / in use):")
        for p in provisioned:
            why = f": {p['reason']}" if p.get("reason") else ""
            print(f"    {p['function']}:{p['qualifier']:<10} {p['requested']} / {p['allocated']} / "
                  f"{p['in_use']}  {p['status']}{why}")
    else:
        print("  provisioned concurrency: none")
    if args.json:
        print(json.dumps(status, indent=1))
    return 0


def is_faas_server(pid: int) -> bool:
    """Whether process ``pid`` is a ``jupyter_faas serve`` (``python -m jupyter_faas serve``,
    ``jupyter faas serve``, ``jupyter-faas serve``) of this user."""
    import psutil
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        if proc.uids().real != os.getuid():
            return False
    except psutil.Error:
        return False
    words = [os.path.basename(w) for w in cmdline]
    return "serve" in words and any(w in ("jupyter_faas", "jupyter-faas", "faas") for w in words)


def cmd_stop(args) -> int:
    info = paths.read_runtime_file()
    if not info:
        print("no FaaS server is running")
        return 0
    pid = int(info["pid"])
    if not is_faas_server(pid):
        # A server killed without its cleanup leaves the file; its pid may now be another process.
        paths.remove_runtime_file(info["pid"])
        print(f"the FaaS server of the runtime file {paths.runtime_file()} is not running (pid "
              f"{pid} is no jupyter_faas serve of yours; nothing was signalled); removed the stale file")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        paths.remove_runtime_file(info["pid"])
        print("the server was not running; removed its stale runtime file")
        return 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            print(f"stopped the FaaS server (pid {info['pid']})")
            return 0
        time.sleep(0.1)
    print(f"the server (pid {info['pid']}) did not stop within 15 s", file=sys.stderr)
    return 1


def cmd_ls(args) -> int:
    conn = _connection()
    functions = conn.request("GET", "/faas/api/functions")["functions"]
    if not functions:
        print("no functions deployed")
    for f in functions:
        print(f"{f['name']:<24} v{f['version']:<4} memory={f['memory']}MB timeout={f['timeout']:g}s"
              + (f" concurrency={f['concurrency']}" if f.get("concurrency") is not None else ""))
    return 0


def cmd_invoke(args) -> int:
    conn = _connection()
    try:
        json.loads(args.event)
    except ValueError as exc:
        raise errors.InvalidParameter(f"the event is not valid JSON: {exc}") from exc
    out = conn.request("POST", f"/faas/api/functions/{args.name}/invocations", args.event.encode())
    for line in out.get("logs", []):
        print(line, file=sys.stderr)
    if out["status"] == "succeeded":
        print(json.dumps(out["result"]))
        return 0
    print(json.dumps(out["error"]), file=sys.stderr)
    error = out.get("error") or {}
    if error.get("errorType") == "TypeError" and error.get("stage") == "run" and \
            "positional argument" in (error.get("errorMessage") or ""):
        print(f"note: `jupyter faas invoke` calls the function as Lambda does, with one argument, "
              f"the JSON event (`{{}}` when none is given). Give {args.name} one parameter (def "
              f"{args.name}(event) or def {args.name}(event, context)), or call a function with "
              f"another signature from Python: faas.lookup({args.name!r})(...)", file=sys.stderr)
    return 1


def cmd_logs(args) -> int:
    conn = _connection()
    rows = conn.request("GET", f"/faas/api/functions/{args.name}/logs", params={"limit": args.limit})
    for row in rows["logs"]:
        print(row["line"])
    return 0


def cmd_aws_env(args) -> int:
    """Shell exports that point boto3 and the AWS CLI at this user's server (started if none runs)."""
    import shlex

    from .client.aws import ACCESS_KEY_ID
    from .client.discovery import discover
    url, token = discover()
    env = {"AWS_ENDPOINT_URL_LAMBDA": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": token, "AWS_REGION": args.region, "AWS_DEFAULT_REGION": args.region}
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from .server.app import FaaSServer
        FaaSServer.launch_instance(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="jupyter faas", description="Run and inspect jupyter_faas.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the server in the foreground (--FaaSServer.<option>=...)")
    p = sub.add_parser("status", help="the server this user's clients use: URL, pid, what runs")
    p.add_argument("--json", action="store_true", help="also print the whole status document")
    p.set_defaults(func=cmd_status)
    sub.add_parser("stop", help="stop this user's server").set_defaults(func=cmd_stop)
    sub.add_parser("ls", help="list deployed functions").set_defaults(func=cmd_ls)
    p = sub.add_parser("invoke", help="invoke a function with a JSON event")
    p.add_argument("name")
    p.add_argument("event", nargs="?", default="{}")
    p.set_defaults(func=cmd_invoke)
    p = sub.add_parser("logs", help="recent log lines of a function")
    p.add_argument("name")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("aws-env", help="print shell exports for boto3 and the AWS CLI: "
                                       'eval "$(jupyter faas aws-env)"')
    p.add_argument("--region", default="us-east-1")
    p.set_defaults(func=cmd_aws_env)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except errors.FaaSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except BrokenPipeError:
        # The reader went away (`jupyter faas logs NAME | head`): it has what it wanted. Point
        # stdout at /dev/null so the interpreter's last flush does not fail again, and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)
