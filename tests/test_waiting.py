"""The client's waits end on ``_thread.interrupt_main()`` from another thread, not only on a real
SIGINT, and otherwise keep ``concurrent.futures``' contract (no server: futures and sockets
are ended by threads here; the real-server cases are in test_cancel_and_durability.py)."""

from __future__ import annotations

import _thread
import concurrent.futures
import socket
import threading
import time

import pytest

from conftest import wait_for
from jupyter_faas.client import waiting
from jupyter_faas.client.invocation import InvocationFuture
from kernel_workers import wire


def _future() -> InvocationFuture:
    return InvocationFuture("f", connection=None)


def _interrupt_after(seconds: float) -> None:
    """``interrupt_main()`` from another thread once the main thread has waited ``seconds``
    (blocked in C by then: a real SIGINT would break that call, this does not)."""
    started = time.monotonic()

    def fire():
        wait_for(lambda: time.monotonic() - started >= seconds, what="the wait under way")
        _thread.interrupt_main()
    threading.Thread(target=fire, daemon=True).start()


def _later(seconds: float, fn, *args) -> threading.Timer:
    """The end a wait would see if the interrupt did not end it first."""
    timer = threading.Timer(seconds, fn, args)
    timer.daemon = True
    timer.start()
    return timer


FUTURE_WAITS = {
    "result": lambda fut: fut.result(),
    "result(timeout)": lambda fut: fut.result(timeout=60),
    "exception": lambda fut: fut.exception(),
    "wait_accepted": lambda fut: fut.wait_accepted(60),
    "wait": lambda fut: waiting.wait([fut]),
    "wait(FIRST_COMPLETED)": lambda fut: waiting.wait([fut, _future()], 60, concurrent.futures.FIRST_COMPLETED),
    "as_completed": lambda fut: list(waiting.as_completed([fut])),
}


@pytest.mark.parametrize("how", FUTURE_WAITS)
def test_an_interrupt_from_another_thread_ends_a_wait_for_a_future(how):
    fut = _future()
    backstop = _later(20, lambda: (fut._settle(), fut.set_result(1)))
    _interrupt_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        FUTURE_WAITS[how](fut)
    assert not fut.done()
    backstop.cancel()
    assert not fut._waiters  # the stepped waits took their waiters off again


def test_an_interrupt_from_another_thread_ends_a_wait_for_a_frame():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = wire.BlockingChannel(ours)
        backstop = _later(20, lambda: wire.BlockingChannel(theirs).send("late"))
        _interrupt_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            waiting.recv(channel)
        backstop.cancel()
        assert not channel.pending_bytes()  # nothing was read: a frame after it is whole
        wire.BlockingChannel(theirs).send("next")
        assert waiting.recv(channel, 10)[0]["k"] == "next"


def test_a_stepped_wait_waits_its_whole_timeout():
    fut = _future()
    for wait in (lambda: fut.result(timeout=0.35), lambda: list(waiting.as_completed([fut], 0.35))):
        started = time.monotonic()
        with pytest.raises(concurrent.futures.TimeoutError):
            wait()
        assert time.monotonic() - started >= 0.35
    started = time.monotonic()
    assert waiting.wait([fut], 0.35).not_done == {fut}
    assert time.monotonic() - started >= 0.35
    assert fut.wait_accepted(0.25) is False
    ours, theirs = socket.socketpair()
    with ours, theirs, pytest.raises(TimeoutError):  # the builtin one: an OSError, as a socket's
        waiting.recv(wire.BlockingChannel(ours), 0.25)


@pytest.mark.parametrize("module", [concurrent.futures, waiting], ids=["concurrent.futures", "waiting"])
def test_wait_and_as_completed_keep_concurrent_futures_contract(module):
    futs = [_future() for _ in range(50)]
    threading.Thread(target=lambda: [f.set_result(i) for i, f in enumerate(futs)]).start()
    done, not_done = module.wait(futs, timeout=60)
    assert len(done) == 50 and not not_done
    assert sorted(f.result() for f in module.as_completed(futs, timeout=60)) == list(range(50))

    futs = [_future() for _ in range(3)]
    threading.Thread(target=lambda: futs[1].set_exception(RuntimeError("x"))).start()
    done, not_done = module.wait(futs, timeout=60, return_when=concurrent.futures.FIRST_EXCEPTION)
    assert done == {futs[1]} and not_done == {futs[0], futs[2]}
    done, _ = module.wait(futs, timeout=0, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {futs[1]}
    futs[0].set_result(0)
    futs[2].set_result(2)
    assert [f.result() for f in module.as_completed([futs[0], futs[2]])] in ([0, 2], [2, 0])
    assert all(not f._waiters for f in futs)


def test_a_wait_off_the_main_thread_is_one_wait():
    # no interrupt reaches another thread: it waits in one go, not in steps
    calls = []

    def wait(timeout):
        calls.append(timeout)
        return True
    out = []
    thread = threading.Thread(target=lambda: out.append(waiting.in_steps(wait, None)))
    thread.start()
    thread.join(10)
    assert out == [True] and calls == [None]
    calls.clear()
    assert waiting.in_steps(lambda t: calls.append(t) or len(calls) == 3, None)
    assert calls == [waiting.STEP_S] * 3
