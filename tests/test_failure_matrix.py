"""Every stage of an invocation crossed with every way it can fail, each with its exact error.

Stages: pickle the arguments in the client, unpickle them in the environment, run,
pickle the result in the environment, unpickle the result in the client.
Failures: an exception, sys.exit, os._exit, a segfault, a memory overrun, a timeout.

os._exit, segfaults, memory overruns and timeouts in the *client's own* (un)pickling
would happen in the user's process, outside any environment, so there is no
invocation to fail there: those cells are not applicable and not listed.
"""

import pytest

import jupyter_faas as faas
from failures import FailOnPickle, FailOnUnpickle, fail

IN_ENV = {
    "exception": None,  # per stage, below
    "sys.exit": (faas.RuntimeExited, "exit status 3"),
    "os._exit": (faas.RuntimeExited, "exit status 4"),
    "segfault": (faas.RuntimeExited, "SIGSEGV"),
    "memory": (faas.OutOfMemory, "limit of 128 MB"),
    "timeout": (faas.InvocationTimeout, "Task timed out after 2.00 seconds"),
}
EXCEPTION_IN = {
    "unpickle_in_env": (faas.SerializationError, "arguments could not be unpickled"),
    "run": (ValueError, "boom"),
    "pickle_in_env": (faas.SerializationError, "result could not be pickled"),
}


@faas.function(memory=128, timeout=2, name="matrix_run")
def run_stage(how):
    return fail(how)


@faas.function(memory=128, timeout=2, name="matrix_args")
def take_arg(arg):
    return "unreachable"


@faas.function(memory=128, timeout=2, name="matrix_result_pickle")
def return_fail_on_pickle(how):
    return FailOnPickle(how)


@faas.function(memory=128, timeout=2, name="matrix_result_unpickle")
def return_fail_on_unpickle(how):
    return FailOnUnpickle(how)


CASES = []
for how in IN_ENV:
    for stage in ("unpickle_in_env", "run", "pickle_in_env"):
        expected = EXCEPTION_IN[stage] if how == "exception" else IN_ENV[how]
        CASES.append((stage, how, *expected))
for how in ("exception", "sys.exit"):
    CASES.append(("pickle_in_client", how, faas.SerializationError, "cannot send the arguments"))
    CASES.append(("unpickle_in_client", how, faas.SerializationError, "could not be unpickled in this process"))


@pytest.mark.parametrize("stage,how,error,text", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_failure_matrix(conn, stage, how, error, text):
    call = {
        "pickle_in_client": lambda: take_arg(FailOnPickle(how)),
        "unpickle_in_env": lambda: take_arg(FailOnUnpickle(how)),
        "run": lambda: run_stage(how),
        "pickle_in_env": lambda: return_fail_on_pickle(how),
        "unpickle_in_client": lambda: return_fail_on_unpickle(how),
    }[stage]
    with pytest.raises(error, match=text) as info:
        call()
    assert isinstance(info.value, faas.FaaSError)
    if stage == "run" and how == "exception":
        assert isinstance(info.value, faas.FunctionError)
        assert "raise ValueError" in str(info.value.__cause__)
    # The environment that failed is replaced: the next call works.
    assert run_stage.local is not None and take_arg(1) == "unreachable"


def test_crash_names_signal_and_last_log_lines(conn):
    @faas.function(name="crasher")
    def crasher():
        print("about to crash")
        import ctypes
        ctypes.string_at(0)

    with pytest.raises(faas.RuntimeExited) as info:
        crasher()
    msg = str(info.value)
    assert "signal: SIGSEGV (-11)" in msg and "segmentation fault" in msg
    assert "about to crash" in msg
