"""Layers for notebook functions (``@faas.function(layers=...)``, ``%%lambda --layer``) against a
real server: a layer published with real boto3, its modules importable by the handler and by
the function's pickled globals, validation, and the layers surviving a configuration change."""

from __future__ import annotations

import json
import sys
import types

import pytest
from lambda_fixtures import client, make_zip
from test_magics import kernel  # noqa: F401 - the real-kernel fixture

import jupyter_faas as faas

SITE = f"python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
GREETLIB = ("class Greeter:\n"
            "    def __init__(self, who):\n"
            "        self.who = who\n"
            "    def greet(self):\n"
            "        return 'hello ' + self.who + ' from the layer'\n"
            "def hello(name):\n"
            "    return 'hi ' + name\n")


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


@pytest.fixture(scope="module")
def greet_layer(lam):
    """``greet:1``: greetlib in python/, deeplib in python/lib/python3.X/site-packages/."""
    out = lam.publish_layer_version(LayerName="greet", Content={"ZipFile": make_zip({
        "python/greetlib.py": GREETLIB, f"{SITE}/deeplib.py": "WHERE = 'site-packages'\n"})})
    return out


def _greeter_from_elsewhere():
    """A ``greetlib.Greeter`` pickled by reference, as a library the notebook has installed would
    be: this process has a ``greetlib`` module (no file, so not shipped by value); the
    environment has only the layer's."""
    module = types.ModuleType("greetlib")
    exec(GREETLIB, module.__dict__)
    sys.modules["greetlib"] = module
    return module.Greeter("ada")


GREETER = None


def layered(event):
    import deeplib
    import greetlib
    return {"hello": greetlib.hello(event["name"]), "global": GREETER.greet(), "deep": deeplib.WHERE,
            "paths": [p for p in sys.path if "/lambda/opt/" in p]}


def test_a_notebook_function_imports_its_layers_modules(conn, lam, greet_layer):
    global GREETER
    GREETER = _greeter_from_elsewhere()
    try:
        f = faas.function(layers=["greet:1"], name="nb_layered")(layered)
        out = f({"name": "bo"})
    finally:
        del sys.modules["greetlib"]
    assert out["hello"] == "hi bo"
    assert out["global"] == "hello ada from the layer"   # unpickled after the layer joined sys.path
    assert out["deep"] == "site-packages"
    assert [p.rsplit("/", 1)[-1] if not p.endswith("site-packages") else "site-packages"
            for p in out["paths"]] == ["python", "site-packages"]

    # the Lambda API shows the layer, and a configuration change keeps it
    conf = lam.get_function_configuration(FunctionName="nb_layered")
    assert [layer["Arn"] for layer in conf["Layers"]] == [greet_layer["LayerVersionArn"]]
    lam.update_function_configuration(FunctionName="nb_layered", MemorySize=256)
    got = json.loads(lam.invoke(FunctionName="nb_layered", Payload=b'{"name": "cy"}')["Payload"].read())
    assert got["hello"] == "hi cy" and got["deep"] == "site-packages"
    assert lam.get_function_configuration(FunctionName="nb_layered")["Layers"][0]["Arn"] == \
        greet_layer["LayerVersionArn"]

    # by ARN too, and a published version keeps the layer
    by_arn = faas.function(layers=[greet_layer["LayerVersionArn"]], name="nb_layered_arn")(
        lambda event: __import__("greetlib").hello(event))
    assert by_arn("x") == "hi x"
    assert faas.lookup(f"nb_layered_arn:{by_arn.publish()}")("y") == "hi y"


def test_without_the_layer_the_module_is_not_there(conn, greet_layer):
    def bare(event):
        try:
            import greetlib  # noqa: F401
        except ImportError:
            return "no greetlib"
        return "greetlib"
    assert faas.function(name="nb_unlayered")(bare)(None) == "no greetlib"


def test_layer_validation_names_the_bad_layer(conn, greet_layer):
    with pytest.raises(faas.InvalidParameter, match=r"greet:9.*does not exist"):
        faas.function(layers=["greet:9"], name="nb_badlayer")(layered).deploy()
    with pytest.raises(faas.InvalidParameter, match=r"'nolayer:1'.*does not exist"):
        faas.function(layers=["nolayer:1"], name="nb_badlayer")(layered).deploy()
    with pytest.raises(faas.InvalidParameter, match="at most 5"):
        faas.function(layers=[f"l{i}:1" for i in range(6)], name="nb_badlayer")(layered)
    with pytest.raises(faas.InvalidParameter, match="NAME:VERSION"):
        faas.function(layers=["greet"], name="nb_badlayer")(layered)
    with pytest.raises(faas.InvalidParameter, match="twice"):
        faas.function(layers=["greet:1", "greet:2"], name="nb_badlayer")(layered)
    # the server checks too (any client): at most 5, and each must exist
    with pytest.raises(faas.InvalidParameter, match="at most 5"):
        conn.request("POST", "/faas/api/functions", {"name": "nb_badlayer", "code": "eA==",
                                                     "layers": [f"l{i}:1" for i in range(6)]})
    with pytest.raises(faas.ResourceNotFound):
        faas.lookup("nb_badlayer")


def test_lambda_cell_magic_attaches_layers(kernel, lam, greet_layer):  # noqa: F811
    lam.publish_layer_version(LayerName="extra", Content={"ZipFile": make_zip({
        "python/extralib.py": "WHO = 'extra'\n", "python/greetlib.py": "def hello(n):\n    return 'top ' + n\n"})})
    cell = ("%%lambda magic_layered --layer greet:1 --layer extra:1\n"
            "def handler(event, context):\n"
            "    import greetlib, extralib, deeplib\n"
            "    return [greetlib.hello(event['name']), extralib.WHO, deeplib.WHERE]\n")
    assert kernel.run(cell).startswith("deployed magic_layered (version 1)")
    # the later layer's greetlib wins, as Lambda merges them into /opt
    assert kernel.value("magic_layered({'name': 'di'})") == ["top di", "extra", "site-packages"]
    assert kernel.value("magic_layered.config['layers']") == ["greet:1", "extra:1"]
    conf = lam.get_function_configuration(FunctionName="magic_layered")
    assert [layer["Arn"].rsplit(":", 2)[-2:] for layer in conf["Layers"]] == [["greet", "1"], ["extra", "1"]]
    # misuse fails the cell with one line naming the layer
    assert "missing:3" in kernel.fails("%%lambda bad_layered --layer missing:3\n"
                                       "def handler(event, context):\n    return 1\n")
    assert "--layer needs a value" in kernel.fails("%%lambda bad_layered --layer\n"
                                                   "def handler(event, context):\n    return 1\n")
