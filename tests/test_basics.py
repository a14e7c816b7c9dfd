"""The user verbs against a real server: call, local, spawn, map, starmap, invoke, versions."""

import os
import time

import pytest

import jupyter_faas as faas


def test_call_runs_in_another_process(conn):
    @faas.function(memory=256, timeout=10)
    def where(x):
        return os.getpid(), x * x

    pid, value = where(7)
    assert value == 49 and pid != os.getpid()
    assert where.local(7)[1] == 49 and where.local(7)[0] == os.getpid()


def test_spawn_future_and_request_id(conn):
    @faas.function
    def square(x):
        return x * x

    fut = square.spawn(7)
    assert isinstance(fut, faas.InvocationFuture)
    assert len(fut.request_id) == 36
    assert fut.result(timeout=30) == 49


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_looking_up_a_running_call_of_this_process_leaves_its_future_working(conn, leases):
    """``faas.Invocation.from_id(rid).wait()`` on a call this process spawned: both end.  A
    second follow of the same request id replaced the first, and the spawned future never
    ended (its result() timed out, its cancel() gave up)."""
    conn.use_leases = leases

    @faas.function(name=f"followed_twice_{leases}", timeout=30)
    def nap(x):
        time.sleep(0.5)
        return x

    nap(0)
    fut = nap.spawn(7)
    looked_up = faas.Invocation.from_id(fut.request_id).wait(timeout=30)
    assert looked_up.status == "succeeded" and looked_up.result == 7
    assert fut.result(timeout=30) == 7


def test_map_and_starmap_keep_input_order(conn):
    @faas.function
    def add(a, b=0):
        return a + b

    assert add.map(range(50)) == list(range(50))
    assert add.map(range(5), range(5)) == [0, 2, 4, 6, 8]
    assert add.starmap([(1,), (2, 3)]) == [1, 5]
    assert add.map(range(20), concurrency=3) == list(range(20))


def test_invoke_returns_record_with_logs_and_report(conn):
    @faas.function(memory=192, name="reporter")
    def reporter(x):
        print("hello from", x)
        return x

    first = reporter.invoke("a")
    assert first.status == "succeeded" and first.result == "a"
    assert first.report.init_duration_ms is not None and first.report.init_duration_ms > 0
    assert first.report.memory_size_mb == 192
    assert first.report.billed_duration_ms >= 1
    assert first.report.max_memory_used_mb > 5  # the process's own peak, not 0
    logs = first.logs
    assert logs[0].startswith("INIT_START Runtime Version: python:")  # a cold start, as Lambda logs it
    assert logs[1] == f"START RequestId: {first.request_id} Version: $LATEST"
    assert "hello from a" in logs
    assert logs[-2] == f"END RequestId: {first.request_id}"
    assert logs[-1].startswith(f"REPORT RequestId: {first.request_id}\tDuration: ")
    assert "Init Duration: " in logs[-1] and "Memory Size: 192 MB" in logs[-1]
    warm = reporter.invoke("b")
    assert warm.report.init_duration_ms is None
    assert "Init Duration" not in warm.logs[-1]


def test_same_code_same_version_changed_new_version(conn):
    def make(k):
        def versioned(x):
            return x + k
        return versioned

    a = faas.function(make(1), name="versioned")
    b = faas.function(make(1), name="versioned")
    c = faas.function(make(2), name="versioned")
    d = faas.function(make(1), name="versioned", memory=512)
    assert a.version == b.version
    assert c.version == a.version + 1
    assert d.version == c.version + 1
    assert c(1) == 3 and a(1) == 2


def test_context_for_handlers_that_ask(conn):
    @faas.function(memory=256, timeout=5, name="ctx")
    def handler(event, context):
        return {
            "id": context.aws_request_id, "name": context.function_name,
            "version": context.function_version, "memory": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis(), "event": event,
        }

    inv = handler.invoke({"key": "a.png"})
    out = inv.result
    assert out["id"] == inv.request_id and out["name"] == "ctx"
    # Lambda's version (unpublished: $LATEST), as AWS_LAMBDA_FUNCTION_VERSION and the START line say
    assert out["version"] == "$LATEST" and out["memory"] == "256"
    assert 0 < out["remaining"] <= 5000 and out["event"] == {"key": "a.png"}


def test_environment_variables_and_isolated_dirs(conn, server):
    @faas.function(env={"MODE": "fast"})
    def environ():
        import tempfile
        return dict(os.environ), os.getcwd(), tempfile.gettempdir()

    env, cwd, tmp = environ()
    assert env["MODE"] == "fast" and env["AWS_LAMBDA_FUNCTION_NAME"] == "environ"
    assert server.token not in repr(env), "the server's token leaked into the environment"
    assert "JUPYTER_FAAS_TOKEN" not in env
    assert tmp.startswith(cwd) and cwd != os.getcwd()


def test_unknown_function_is_resource_not_found(conn):
    with pytest.raises(faas.ResourceNotFound, match="Function not found: nope"):
        conn.request("POST", "/faas/api/functions/nope/invocations", b"{}")


def test_every_exception_subclasses_faas_error():
    for name in faas.__all__:
        obj = getattr(faas, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, faas.FaaSError), name


@pytest.mark.parametrize("leases", [True, False], ids=["leased", "through-the-server"])
def test_map_concurrency_is_kept(conn, leases):
    conn.use_leases = leases
    name = f"capped_{'leased' if leases else 'server'}"

    @faas.function(name=name, timeout=30)
    def capped(x):
        time.sleep(0.3)
        return x

    assert capped.map(range(12), concurrency=3) == list(range(12))
    rows = conn.request("GET", "/faas/api/invocations", params={"function": name, "limit": 100})
    spans = [(r["started_at"], r["ended_at"]) for r in rows["invocations"]]
    assert len(spans) == 12
    if not leases:
        # the server keeps the cap: every item was recorded when the map began, not as slots
        # freed (before any item ended).  Through leases (one per slot of the cap) an item is
        # recorded when its environment starts it.
        assert max(r["created_at"] for r in rows["invocations"]) < min(e for _, e in spans)
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 3, spans


def test_a_bad_group_is_refused_with_a_clear_error(conn):
    from jupyter_faas.errors import InvalidParameter
    from jupyter_faas.client.invocation import InvocationFuture
    from jupyter_faas.client.serialization import dumps_call

    @faas.function(name="grouped")
    def grouped(x):
        return x

    grouped.deploy()
    fut = InvocationFuture("grouped", conn)
    conn.submit_many([(fut, dumps_call((1,), {}, "grouped"))], "grouped", queue=True,
                     group=("g", 0))
    with pytest.raises(InvalidParameter, match="group limit 0"):
        fut.result(30)
