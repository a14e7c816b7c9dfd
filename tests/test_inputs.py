"""Bad input gets a clear error and loses nothing; values that can't be pickled are named."""

import re
import threading

import pytest

import jupyter_faas as faas


@pytest.mark.parametrize("options,text", [
    ({"memory": 64}, "memory=64 is out of range: give a whole number of MB from 128 to 10240"),
    ({"memory": 20000}, "from 128 to 10240"),
    ({"timeout": 0}, "timeout=0 is out of range: give seconds from 1 to 900"),
    ({"timeout": 901}, "from 1 to 900"),
    ({"name": "bad name!"}, "invalid function name 'bad name!'"),
    ({"env": {"AWS_LAMBDA_FUNCTION_NAME": "x"}}, "reserved"),
    ({"concurrency": -1}, "concurrency=-1 is invalid"),
])
def test_bad_options_fail_at_the_call_site(options, text):
    with pytest.raises(faas.InvalidParameter, match=text):
        faas.function(lambda x: x, **{"name": "ok", **options})


def test_positional_options_are_refused():
    with pytest.raises(faas.InvalidParameter, match="keyword-only"):
        faas.function(256)


def test_every_bad_option_is_named_in_one_error():
    # The memory is what is wrong, not the lambda's name.
    with pytest.raises(faas.InvalidParameter, match="memory=64 is out of range") as info:
        faas.function(memory=64, timeout=10)(lambda: 1)
    assert "name" not in str(info.value)
    with pytest.raises(faas.InvalidParameter) as info:
        faas.function(lambda: 1, name="bad name!", memory=64, timeout=0, concurrency=-1,
                      env={"AWS_REGION": "x", "1BAD": "y"}, show="yes")
    text = str(info.value)
    assert text.startswith("6 invalid options: ")
    for part in ("invalid function name 'bad name!'", "memory=64", "timeout=0", "concurrency=-1",
                 "'AWS_REGION' is reserved", "'1BAD' is not a valid", "show='yes'"):
        assert part in text, part


def test_lambdas_and_nameless_callables_get_usable_names(conn):
    inc = faas.function(lambda x: x + 1)
    assert re.fullmatch(r"lambda_[0-9a-f]{8}", inc.name)
    assert faas.function(lambda x: x + 1).name == inc.name  # the same code, the same name
    assert faas.function(lambda x: x + 2).name != inc.name
    assert inc(1) == 2

    class Scaler:
        def __call__(self, x):
            return 3 * x
    scale = faas.function(Scaler())
    assert re.fullmatch(r"Scaler_[0-9a-f]{8}", scale.name)
    assert scale(2) == 6


def test_a_callable_objects_own_name_and_config_do_not_override_the_options(conn):
    class Model:
        def __init__(self):
            self.name = "resnet"
            self.config = {"memory": 1, "timeout": 1000}

        def __call__(self, x):
            return f"{self.name}:{x}"

    model = faas.function(Model(), name="classify", memory=256, timeout=7)
    assert model.name == "classify"
    assert model.config["memory"] == 256 and model.config["timeout"] == 7.0
    inv = model.invoke("cat")
    assert inv.result == "resnet:cat" and inv.function == "classify"
    assert inv.report.memory_size_mb == 256


def test_rewrapping_applies_the_new_options(conn):
    def double(x):
        return 2 * x

    small = faas.function(double, name="rewrapped", timeout=7)
    big = faas.function(memory=512)(small)
    assert big.name == "rewrapped" and big.config["memory"] == 512 and big.config["timeout"] == 7.0
    assert big.__wrapped__ is double
    inv = big.invoke(21)
    assert inv.result == 42 and inv.report.memory_size_mb == 512
    assert faas.function(small, name="renamed").name == "renamed"


@pytest.mark.parametrize("body,status,error_type", [
    ({"name": "x", "code": "AAAA", "memory": 1}, 400, "InvalidParameterValueException"),
    ({"name": "x", "code": "AAAA", "timeout": 1000}, 400, "InvalidParameterValueException"),
    ({"name": "no/slash", "code": "AAAA"}, 400, "InvalidParameterValueException"),
    ({"name": "x", "code": "not base64!"}, 400, "InvalidParameterValueException"),
])
def test_rest_rejects_bad_deploys_with_4xx(server, body, status, error_type):
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request(server.url + "/faas/api/functions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"token {server.token}"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    assert info.value.code == status
    assert info.value.headers["x-amzn-ErrorType"] == error_type
    assert json.loads(info.value.read())["message"]


def test_rest_requires_token_and_rejects_bad_json(server):
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "/faas/api/functions")
    assert info.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "/faas/api/functions?token=wrong")
    assert info.value.code == 403
    req = urllib.request.Request(server.url + "/faas/api/functions", data=b"{nope",
                                 headers={"Authorization": f"token {server.token}"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    assert info.value.code == 400 and b"not valid JSON" in info.value.read()


def test_server_binds_loopback(server):
    assert server.url.startswith("http://127.0.0.1:")


def test_payload_too_large_names_limit_and_setting(conn):
    @faas.function(name="big")
    def big(data):
        return len(data)

    with pytest.raises(faas.PayloadTooLarge, match=r"limit is 6291456 bytes.*max_payload_mb"):
        big(b"x" * (7 * 1024 * 1024))
    assert big(b"x" * 1000) == 1000  # nothing was lost or broken


def test_result_too_large_fails_clearly(conn):
    @faas.function(name="bigresult", memory=512)
    def bigresult():
        return b"x" * (7 * 1024 * 1024)

    # The handler returned: its own class, never FunctionError ("the handler raised").
    with pytest.raises(faas.ResponseSizeTooLarge,
                       match="the result is .* bytes; the limit is 6291456") as info:
        bigresult()
    assert not isinstance(info.value, faas.FunctionError)
    assert isinstance(info.value, faas.InvocationError) and info.value.request_id
    inv = bigresult.invoke()
    assert inv.status == "failed" and isinstance(inv.error, faas.ResponseSizeTooLarge)
    assert isinstance(faas.Invocation.from_id(inv.request_id).error, faas.ResponseSizeTooLarge)


conn_lock = threading.Lock()


def test_unpicklable_global_is_named(conn):
    @faas.function(name="uses_lock")
    def square(x):
        with conn_lock:
            return x * x

    with pytest.raises(faas.SerializationError,
                       match=r"square\.__globals__\['conn_lock'\]: _thread\.lock cannot be pickled") as info:
        square(2)
    # the pickler's own frames are not shown before the message: its error is, without them
    assert "cannot pickle '_thread.lock' object" in str(info.value.__cause__)
    assert info.value.__cause__.__traceback__ is None


def test_unpicklable_argument_is_named_and_nothing_sent(conn):
    @faas.function(name="takes_anything")
    def ident(x):
        return x

    with pytest.raises(faas.SerializationError, match=r"args\[0\]\['lock'\]: _thread\.lock"):
        ident({"lock": threading.Lock()})
    rows = conn.request("GET", "/faas/api/invocations", params={"function": "takes_anything"})
    assert rows["invocations"] == []


def test_unpicklable_result_fails_the_call_without_hanging(conn):
    @faas.function(name="returns_lock")
    def make_lock():
        import threading
        return threading.Lock()

    with pytest.raises(faas.SerializationError, match="result could not be pickled"):
        make_lock()


def test_local_module_ships_by_value(conn):
    import mylocalhelpers

    @faas.function(name="uses_local_module")
    def f(x):
        import os
        return mylocalhelpers.triple(x), os.getcwd()

    value, cwd = f(5)
    assert value == 15
    assert "tests" not in cwd


def test_lambdas_and_closures_ship(conn):
    k = 10
    add_k = faas.function(lambda x: x + k, name="closure_lambda")
    assert add_k.map([1, 2]) == [11, 12]

    class Point:
        def __init__(self, x):
            self.x = x

    @faas.function(name="local_class")
    def norm(p):
        return Point(p.x * 2)

    assert norm(Point(2)).x == 4


def test_an_unknown_option_is_named_with_the_one_it_probably_meant():
    with pytest.raises(faas.InvalidParameter, match=r"memroy= \(did you mean memory=\?\), bogus=;"):
        faas.function(memory=256, memroy=512, bogus=1)
