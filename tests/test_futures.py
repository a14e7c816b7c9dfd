"""InvocationFuture keeps concurrent.futures.Future's contract with its lighter condition.

A map makes one future per item, so the future is built without ``threading.Condition``
(made on the first wait): these check that every way of waiting still wakes, times out and
raises as ``concurrent.futures`` promises, and that ``Future`` has no field we do not set.
"""

from __future__ import annotations

import concurrent.futures
import gc
import threading

import pytest

from jupyter_faas.client.invocation import InvocationFuture


def _future() -> InvocationFuture:
    return InvocationFuture("f", connection=None)


def test_sets_every_field_future_sets():
    # A Python whose Future.__init__ sets a new field must not leave ours without it.
    assert set(vars(concurrent.futures.Future())) <= set(vars(_future()))


def test_result_wakes_a_waiter_in_another_thread():
    fut = _future()
    got = []
    waiter = threading.Thread(target=lambda: got.append(fut.result(timeout=60)))
    waiter.start()
    # the waiter has made the condition (under the lock) before it sleeps in it
    while fut._condition._cond is None:
        threading.Event().wait(0.001)
    fut.set_result(42)
    waiter.join(60)
    assert got == [42]


def test_result_times_out_and_raises_the_error():
    fut = _future()
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.result(timeout=0.01)
    fut.set_exception(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        fut.result(timeout=1)


def test_wait_and_as_completed_see_ends_from_other_threads():
    futs = [_future() for _ in range(50)]
    threading.Thread(target=lambda: [f.set_result(i) for i, f in enumerate(futs)]).start()
    done, not_done = concurrent.futures.wait(futs, timeout=60)
    assert len(done) == 50 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futs, timeout=60)) == list(range(50))


def test_first_exception_wakes_wait():
    futs = [_future() for _ in range(3)]
    threading.Thread(target=lambda: futs[1].set_exception(RuntimeError("x"))).start()
    done, _ = concurrent.futures.wait(futs, timeout=60, return_when=concurrent.futures.FIRST_EXCEPTION)
    assert futs[1] in done


def test_a_future_nobody_waited_on_has_no_threading_condition():
    fut = _future()
    fut.set_result(1)
    assert fut.result() == 1 and fut.done()
    assert fut._condition._cond is None
    assert not any(isinstance(o, threading.Condition) for o in gc.get_referents(fut._condition))


def test_logs_start_empty_and_keep_the_newest():
    fut = _future()
    assert list(fut.logs) == [] and not fut.logs
    fut._log_lines([[0.0, "stdout", "a"], [0.0, "stdout", "b"]])
    assert list(fut.logs) == ["a", "b"]
