"""Layers with real boto3 (and the AWS CLI v1) against a real server: publish, read, list,
delete; a function's layers merged in order (later wins) after its own code on sys.path."""

from __future__ import annotations

import base64
import hashlib
import json
import sys

import pytest
from lambda_fixtures import client, create, make_zip

SITE = f"python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
APP = ("import sys, shared, deep, mine\n"
       "def handler(event, context):\n"
       "    return {'shared': shared.WHO, 'deep': deep.WHO, 'mine': mine.WHO,\n"
       "            'paths': [p for p in sys.path if '/lambda/' in p]}\n")


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def test_publish_get_list_delete_layer_versions(lam):
    data = make_zip({"python/util.py": "X = 1\n"})
    v1 = lam.publish_layer_version(LayerName="util", Description="first", Content={"ZipFile": data},
                                   CompatibleRuntimes=["python3.11", "python3.12"], LicenseInfo="MIT")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == 1 and v1["LayerArn"] == "arn:aws:lambda:us-east-1:000000000000:layer:util"
    assert v1["LayerVersionArn"] == v1["LayerArn"] + ":1"
    assert v1["Content"]["CodeSha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert v1["Content"]["CodeSize"] == len(data)
    assert (v1["Description"], v1["CompatibleRuntimes"], v1["LicenseInfo"]) == \
        ("first", ["python3.11", "python3.12"], "MIT")
    v2 = lam.publish_layer_version(LayerName="util", Content={"ZipFile": make_zip({"python/util.py": "X = 2\n"})},
                                   CompatibleRuntimes=["python3.12"])
    assert v2["Version"] == 2

    got = lam.get_layer_version(LayerName="util", VersionNumber=1)
    assert got["LayerVersionArn"] == v1["LayerVersionArn"] and got["Description"] == "first"
    assert lam.get_layer_version_by_arn(Arn=v2["LayerVersionArn"])["Version"] == 2
    versions = lam.list_layer_versions(LayerName="util")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]   # newest first, as Lambda lists them
    assert [v["Version"] for v in lam.list_layer_versions(
        LayerName="util", CompatibleRuntime="python3.11")["LayerVersions"]] == [1]
    pages = lam.get_paginator("list_layer_versions").paginate(LayerName="util",
                                                              PaginationConfig={"PageSize": 1})
    assert [v["Version"] for p in pages for v in p["LayerVersions"]] == [2, 1]

    lam.publish_layer_version(LayerName="other", Content={"ZipFile": data})
    layers = {layer["LayerName"]: layer for layer in lam.list_layers()["Layers"]}
    assert layers["util"]["LatestMatchingVersion"]["Version"] == 2
    assert layers["util"]["LatestMatchingVersion"]["LayerVersionArn"] == v2["LayerVersionArn"]
    assert "other" in layers
    matching = {layer["LayerName"]: layer["LatestMatchingVersion"]["Version"]
                for layer in lam.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    assert matching["util"] == 1

    lam.delete_layer_version(LayerName="util", VersionNumber=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName="util", VersionNumber=1)
    lam.delete_layer_version(LayerName="util", VersionNumber=1)  # again: 204, as Lambda answers
    # a number is never given out again
    assert lam.publish_layer_version(LayerName="util", Content={"ZipFile": data})["Version"] == 3
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="unzip"):
        lam.publish_layer_version(LayerName="util", Content={"ZipFile": b"not a zip"})


def test_layers_merge_in_order_after_the_functions_code(lam):
    base = lam.publish_layer_version(LayerName="base", Content={"ZipFile": make_zip({
        "python/shared.py": "WHO = 'base'\n", f"{SITE}/deep.py": "WHO = 'base site-packages'\n",
        "python/mine.py": "WHO = 'layer'\n"})})["LayerVersionArn"]
    top = lam.publish_layer_version(LayerName="top", Content={"ZipFile": make_zip({
        "python/shared.py": "WHO = 'top'\n"})})["LayerVersionArn"]
    conf = create(lam, "layered", {"app.py": APP, "mine.py": "WHO = 'function'\n"}, Layers=[base, top])
    assert [layer["Arn"] for layer in conf["Layers"]] == [base, top]
    out = json.loads(lam.invoke(FunctionName="layered")["Payload"].read())
    # the later layer wins; site-packages joins too; the function's own code comes first
    assert out == {"shared": "top", "deep": "base site-packages", "mine": "function", "paths": out["paths"]}
    task_root, python, site = out["paths"][:3]
    assert "/lambda/code/" in task_root and python.endswith("/python") and site.endswith(SITE)
    assert python.rsplit("/python", 1)[0] == site.rsplit("/" + SITE, 1)[0]   # one merged /opt

    # the order decides; UpdateFunctionConfiguration(Layers=...) replaces them
    lam.update_function_configuration(FunctionName="layered", Layers=[top, base])
    assert json.loads(lam.invoke(FunctionName="layered")["Payload"].read())["shared"] == "base"
    assert [layer["Arn"] for layer in lam.get_function_configuration(FunctionName="layered")["Layers"]] \
        == [top, base]
    lam.update_function_configuration(FunctionName="layered", Layers=[])
    r = lam.invoke(FunctionName="layered")
    assert r["FunctionError"] == "Unhandled"
    assert json.loads(r["Payload"].read())["errorType"] == "Runtime.ImportModuleError"


def test_bad_layer_lists_are_refused(lam):
    arn = lam.publish_layer_version(LayerName="few", Content={"ZipFile": make_zip({"python/a.py": ""})})[
        "LayerVersionArn"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="less than or equal to 5"):
        create(lam, "six", {"app.py": APP}, Layers=[arn] * 6)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        create(lam, "ghost", {"app.py": APP}, Layers=[arn[:-1] + "9"])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="same layer"):
        create(lam, "twice", {"app.py": APP}, Layers=[arn, arn])
