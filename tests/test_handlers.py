"""What a handler gets and gives back: its REPORT, async handlers, Lambda's context, current code."""

import re

import pytest

import jupyter_faas as faas


def test_report_prints_as_lambdas_report_line(conn):
    @faas.function(memory=192, name="reported")
    def reported(x):
        return x

    inv = reported.invoke(1)
    text = str(inv.report)
    assert re.fullmatch(
        rf"REPORT RequestId: {inv.request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        rf"Memory Size: 192 MB\tMax Memory Used: \d+ MB\t(Init Duration: \d+\.\d\d ms\t)?"
        rf"Cost: \$[0-9.e-]+ \([0-9.e-]+ GB-s\)", text), text
    assert repr(inv.report) == text  # what a notebook cell shows: no dataclass, no float noise
    assert inv.report.cost_usd == float(f"{inv.report.cost_usd:.4g}")
    stored = faas.Invocation.from_id(inv.request_id).report
    assert str(stored).startswith(f"REPORT RequestId: {inv.request_id}\tDuration: ")
    fut = reported.spawn(2)
    fut.result(timeout=30)
    assert str(fut.report).startswith(f"REPORT RequestId: {fut.request_id}\t")


def test_local_call_of_a_lambda_handler_gets_a_local_context(conn):
    @faas.function(memory=256, timeout=5, name="ctx_local")
    def handler(event, context):
        return {"id": context.aws_request_id, "name": context.function_name,
                "version": context.function_version, "memory": context.memory_limit_in_mb,
                "remaining": context.get_remaining_time_in_millis(), "event": event}

    local = handler.local({"k": 1})
    remote = handler({"k": 1})
    assert local.keys() == remote.keys()
    assert local["name"] == remote["name"] == "ctx_local"
    assert local["memory"] == remote["memory"] == "256"
    assert local["version"] == "$LATEST" and remote["version"] == str(handler.version)
    assert len(local["id"]) == 36 and local["id"] != remote["id"]
    assert 0 < local["remaining"] <= 5000 and local["event"] == {"k": 1}


def test_context_only_for_lambda_shaped_calls(conn):
    @faas.function(name="render")
    def render(template, context):
        return template.format(**context)

    # Two arguments: exactly them, locally and remotely, never an injected context.
    assert render("hi {name}", {"name": "ada"}) == "hi ada"
    assert render.local("hi {name}", {"name": "ada"}) == "hi ada"
    assert render.map(["a {x}", "b {x}"], [{"x": 1}, {"x": 2}]) == ["a 1", "b 2"]

    @faas.function(name="kwctx")
    def kwctx(event, *, context=None, flag=False):
        return type(context).__name__, flag

    assert kwctx(1) == ("LambdaContext", False)
    assert kwctx(1, flag=True) == ("NoneType", True)  # keyword arguments: not Lambda-shaped

    @faas.function(name="firstctx")
    def firstctx(context=None):
        return context

    assert firstctx() is None and firstctx(5) == 5  # only a *second* parameter named context


def test_async_handlers_are_awaited_in_the_environment(conn):
    @faas.function(name="fetch_async")
    async def fetch(x):
        import asyncio
        await asyncio.sleep(0.001)
        return x * 2

    assert fetch(21) == 42
    assert fetch.map([1, 2, 3]) == [2, 4, 6]  # warm environments reuse their event loop

    @faas.function(name="async_ctx")
    async def handler(event, context):
        return event, context.function_name

    assert handler("e") == ("e", "async_ctx")


def test_a_generator_result_says_to_return_a_list(conn):
    @faas.function(name="lazy")
    def lazy(n):
        yield from range(n)

    with pytest.raises(faas.SerializationError, match=r"returned a generator .*return a list"):
        lazy(3)

    @faas.function(name="lazy_async")
    async def lazy_async(n):
        for i in range(n):
            yield i

    with pytest.raises(faas.SerializationError, match=r"returned an async generator .*return a list"):
        lazy_async(3)
