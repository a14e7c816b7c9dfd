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
    assert local["version"] == remote["version"] == "$LATEST"
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


def _notebook(code: str, ns: dict | None = None) -> dict:
    """Run ``code`` as a notebook cell would: in ``__main__``'s namespace, so it ships by value."""
    ns = ns if ns is not None else {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(code, "<cell>", "exec"), ns)
    return ns


def test_a_call_runs_the_code_as_it_is_now(conn):
    ns = _notebook("LIMIT = 4\ndef capped(x):\n    return helper(x)\n")
    _notebook("def helper(x):\n    return x * LIMIT\n", ns)
    capped = faas.function(ns["capped"], name="capped")
    assert capped(1) == 4
    first = capped.version
    deployed = capped._deployed
    assert capped(1) == 4 and capped._deployed is deployed  # nothing changed: nothing pickled again

    _notebook("LIMIT = 20", ns)  # a global the helper reads is rebound
    assert (capped(1), capped.local(1)) == (20, 20)
    assert capped.version == first + 1

    _notebook("def helper(x):\n    return x + 100\n", ns)  # the helper is redefined
    assert (capped(1), capped.local(1)) == (101, 101)
    assert capped.version == first + 2

    _notebook("def helper(x):\n    return x * LIMIT\n", ns)  # back as it was: its version again
    assert capped(1) == 20 and capped.version == first + 1


def test_a_change_to_a_class_closure_or_default_is_a_new_version(conn):
    ns = _notebook("class Scaler:\n    def scale(self, x):\n        return 2 * x\n"
                   "def make(k):\n    def scaled(x, offset=0):\n"
                   "        return Scaler().scale(x) * k + offset\n"
                   "    return scaled\n")
    scaled = faas.function(ns["make"](1), name="scaled")
    assert scaled(5) == 10
    _notebook("Scaler.scale = lambda self, x: 3 * x", ns)  # a method replaced on the class
    assert scaled(5) == 15
    scaled.__wrapped__.__defaults__ = (1,)
    assert scaled(5) == 16
    scaled.__wrapped__.__closure__[0].cell_contents = 2  # the closure's k
    assert scaled(5) == 31 == scaled.local(5)


def test_a_keyboardinterrupt_the_handler_raises_is_its_error_not_an_exit(conn):
    @faas.function(name="interrupts", show=False)
    def interrupts():
        raise KeyboardInterrupt("stop here")

    with pytest.raises(faas.FunctionError) as info:
        interrupts()
    # the handler's error (not RuntimeExited), named, but no KeyboardInterrupt here: that would
    # read as the caller's own Ctrl-C (test_remote_errors has the rest)
    assert info.value.remote_type == "KeyboardInterrupt" and "stop here" in str(info.value)
    assert not isinstance(info.value, KeyboardInterrupt)
