"""Lambda's control plane with real boto3 and the real AWS CLI v1 against a real server (§2)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lambda_fixtures import ROLE, client, create, make_zip

APP = "def handler(event, context):\n    return {'v': 1, 'event': event}\n"


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def test_create_get_list_update_delete(lam):
    data = make_zip({"app.py": APP})
    conf = lam.create_function(FunctionName="crud", Runtime="python3.12", Handler="app.handler", Role=ROLE,
                               Code={"ZipFile": data}, Timeout=5, MemorySize=256, Description="first",
                               Environment={"Variables": {"MODE": "fast"}})
    assert conf["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert conf["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:crud"
    assert conf["CodeSha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert conf["CodeSize"] == len(data)
    assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", conf["LastModified"])
    assert (conf["Timeout"], conf["MemorySize"], conf["Runtime"], conf["Description"]) == (5, 256, "python3.12", "first")
    assert conf["Environment"] == {"Variables": {"MODE": "fast"}} and conf["Version"] == "$LATEST"

    got = lam.get_function(FunctionName="crud")
    assert got["Configuration"]["CodeSha256"] == conf["CodeSha256"]
    assert got["Code"]["Location"].startswith("file://")
    assert lam.get_function_configuration(FunctionName="crud")["Handler"] == "app.handler"
    lam.get_waiter("function_active_v2").wait(FunctionName="crud")
    lam.get_waiter("function_exists").wait(FunctionName="crud")

    new = make_zip({"app.py": APP.replace("'v': 1", "'v': 2")})
    updated = lam.update_function_code(FunctionName="crud", ZipFile=new)
    assert updated["CodeSha256"] == base64.b64encode(hashlib.sha256(new).digest()).decode()
    assert updated["RevisionId"] != conf["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName="crud")
    assert json.loads(lam.invoke(FunctionName="crud")["Payload"].read())["v"] == 2

    updated = lam.update_function_configuration(FunctionName="crud", MemorySize=512, Timeout=9,
                                                Description="second", RevisionId=updated["RevisionId"])
    assert (updated["MemorySize"], updated["Timeout"], updated["Description"]) == (512, 9, "second")
    assert updated["Environment"] == {"Variables": {"MODE": "fast"}}  # what was not given is kept
    assert updated["CodeSha256"] == base64.b64encode(hashlib.sha256(new).digest()).decode()
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(FunctionName="crud", Timeout=3, RevisionId=conf["RevisionId"])
    report = lam.invoke(FunctionName="crud", LogType="Tail")["LogResult"]
    assert "Memory Size: 512 MB" in base64.b64decode(report).decode()

    lam.delete_function(FunctionName="crud")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="crud")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName="crud")


def test_list_functions_pages_with_the_paginator(lam):
    for i in range(7):
        create(lam, f"page-{i}", {"app.py": APP})
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 3}) for f in page["Functions"]]
    assert [n for n in names if n.startswith("page-")] == [f"page-{i}" for i in range(7)]
    assert len(names) == len(set(names))
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first["NextMarker"]


def test_errors_name_the_field(lam):
    create(lam, "dup", {"app.py": APP})
    with pytest.raises(lam.exceptions.ResourceConflictException, match="Function already exist: dup"):
        create(lam, "dup", {"app.py": APP})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="'memorySize'"):
        create(lam, "bad-mem", {"app.py": APP}, MemorySize=20480)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="'timeout'"):
        create(lam, "bad-timeout", {"app.py": APP}, Timeout=901)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="'role'"):
        lam.create_function(FunctionName="bad-role", Runtime="python3.11", Handler="app.handler",
                            Role="not-a-role", Code={"ZipFile": make_zip({"app.py": APP})})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="nodejs20.x is not supported"):
        lam.create_function(FunctionName="node", Runtime="nodejs20.x", Handler="index.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"index.js": ""})})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Code.ZipFile"):
        lam.create_function(FunctionName="s3", Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"S3Bucket": "bucket", "S3Key": "key.zip"})
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_configuration(FunctionName="missing", Timeout=3)


def test_reserved_environment_keys_and_the_4_kb_limit(lam):
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match="reserved keys.*Reserved keys used in this request: AWS_REGION"):
        create(lam, "env-reserved", {"app.py": APP}, Environment={"Variables": {"AWS_REGION": "x"}})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="exceeded the 4KB limit"):
        create(lam, "env-big", {"app.py": APP}, Environment={"Variables": {"BIG": "x" * 4100}})
    create(lam, "env-ok", {"app.py": "import os\ndef handler(e, c):\n    return os.environ['K']\n"},
           Environment={"Variables": {"K": "v" * 4000}})
    assert json.loads(lam.invoke(FunctionName="env-ok")["Payload"].read()) == "v" * 4000


def test_nested_packages_and_dir_module_handlers(lam):
    files = {"pkg/__init__.py": "", "pkg/sub/__init__.py": "",
             "pkg/sub/mod.py": "from pkg import helper\ndef handler(event, ctx):\n    return helper.twice(event)\n",
             "pkg/helper.py": "def twice(x):\n    return x * 2\n"}
    create(lam, "nested", files, handler="pkg.sub.mod.handler")
    assert json.loads(lam.invoke(FunctionName="nested", Payload=b"21")["Payload"].read()) == 42
    create(lam, "slashed", files, handler="pkg/sub/mod.handler")
    assert json.loads(lam.invoke(FunctionName="slashed", Payload=b"4")["Payload"].read()) == 8


@pytest.mark.parametrize("files,handler,error_type,message", [
    ({"app.py": "import not_installed_anywhere\n"}, "app.handler", "Runtime.ImportModuleError",
     "Unable to import module 'app': No module named 'not_installed_anywhere'"),
    ({"app.py": APP}, "nope.handler", "Runtime.ImportModuleError", "Unable to import module 'nope'"),
    ({"app.py": APP}, "app.missing", "Runtime.HandlerNotFound", "Handler 'missing' missing on module 'app'"),
    ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"),
    ({"app.py": APP}, "apphandler", "Runtime.MalformedHandlerName", "Bad handler 'apphandler'"),
])
def test_init_errors_are_lambdas(lam, files, handler, error_type, message):
    name = "init-" + error_type.split(".")[1].lower()
    create(lam, name, files, handler=handler)
    r = lam.invoke(FunctionName=name, LogType="Tail")
    body = json.loads(r["Payload"].read())
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == error_type and message in body["errorMessage"]
    assert f"Error Type: {error_type}" in base64.b64decode(r["LogResult"]).decode()
    lam.delete_function(FunctionName=name)


def test_bad_zips_are_refused(lam, server):
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Could not unzip"):
        lam.create_function(FunctionName="notzip", Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": b"this is not a zip"})
    for name, zipped in [("slip", make_zip({"../../escaped.py": "x = 1\n", "app.py": APP})),
                         ("abs", make_zip({"/tmp/absolute.py": "x = 1\n", "app.py": APP})),
                         ("link", make_zip({"app.py": APP}, symlinks={"etc": "../../../../etc"})),
                         ("abslink", make_zip({"app.py": APP}, symlinks={"passwd": "/etc/passwd"}))]:
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match="outside the package|symlink"):
            lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                                Code={"ZipFile": zipped})
    data_dir = Path(server.base) / "data"
    assert not list(data_dir.rglob("escaped.py")) and not list(Path("/tmp").glob("absolute.py"))
    # a symlink inside the package is kept
    create(lam, "inlink", {"app.py": APP, "real/data.txt": "hi"})
    zipped = make_zip({"app.py": "def handler(e, c):\n    return open('/'.join([__file__.rsplit('/', 1)[0], 'alias.txt'])).read()\n",
                       "real/data.txt": "hi"}, symlinks={"alias.txt": "real/data.txt"})
    lam.update_function_code(FunctionName="inlink", ZipFile=zipped)
    assert json.loads(lam.invoke(FunctionName="inlink")["Payload"].read()) == "hi"


def test_size_limits_are_configurable(make_server):
    server = make_server("--FaaSServer.lambda_zip_max_mb=0.05", "--FaaSServer.lambda_unzipped_max_mb=0.2")
    lam = client(server)
    incompressible = os.urandom(75_000).hex()  # 150 KB of text that zips to ~75 KB
    with pytest.raises(lam.exceptions.RequestTooLargeException, match="lambda_zip_max_mb"):
        create(lam, "zipped-big", {"app.py": APP, "blob.txt": incompressible})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Unzipped size.*lambda_unzipped_max_mb"):
        create(lam, "unzipped-big", {"app.py": APP, "zeros.txt": "0" * 300_000})
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["CodeSizeZipped"] == int(0.05 * 1024 * 1024)
    assert settings["AccountLimit"]["CodeSizeUnzipped"] == int(0.2 * 1024 * 1024)


def test_account_settings_and_concurrency(lam):
    create(lam, "conc", {"app.py": APP})
    assert lam.get_function_concurrency(FunctionName="conc").get("ReservedConcurrentExecutions") is None
    assert lam.put_function_concurrency(FunctionName="conc", ReservedConcurrentExecutions=3)[
        "ReservedConcurrentExecutions"] == 3
    assert lam.get_function_concurrency(FunctionName="conc")["ReservedConcurrentExecutions"] == 3
    assert lam.get_function(FunctionName="conc")["Concurrency"] == {"ReservedConcurrentExecutions": 3}
    settings = lam.get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] >= 1
    assert settings["AccountLimit"]["CodeSizeZipped"] == 50 * 1024 * 1024
    lam.delete_function_concurrency(FunctionName="conc")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName="conc")


def test_an_operation_this_server_lacks_says_so(lam):
    with pytest.raises(lam.exceptions.ClientError, match="UnknownOperationException"):
        lam.list_tags(Resource="arn:aws:lambda:us-east-1:000000000000:function:x")


# ---- the AWS CLI v1, as a user runs it: eval "$(jupyter faas aws-env)" --------------------------

def _aws_env(server) -> dict:
    out = subprocess.run([sys.executable, "-m", "jupyter_faas", "aws-env"], env=server.env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    exports = dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))
    assert set(exports) == {"AWS_ENDPOINT_URL_LAMBDA", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                            "AWS_REGION", "AWS_DEFAULT_REGION"}
    assert exports["AWS_ENDPOINT_URL_LAMBDA"] == server.url
    return dict(server.env, **{k: v.strip("'") for k, v in exports.items()},
                AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_MAX_ATTEMPTS="1")


def _aws(env, *args, check=True):
    aws = str(Path(sys.executable).parent / "aws")
    return subprocess.run([aws, "lambda", *args], env=env, capture_output=True, text=True,
                          check=check, timeout=120)


def test_the_aws_cli_creates_invokes_and_deletes(server, tmp_path):
    env = _aws_env(server)
    package = tmp_path / "hello.zip"
    package.write_bytes(make_zip({"app.py": "def handler(event, context):\n    print('hello', event['name'])\n"
                                            "    return {'hi': event['name']}\n"}))
    out = json.loads(_aws(env, "create-function", "--function-name", "cli-hello", "--runtime", "python3.11",
                          "--handler", "app.handler", "--zip-file", f"fileb://{package}", "--role", ROLE,
                          "--timeout", "5", "--memory-size", "256").stdout)
    assert out["FunctionName"] == "cli-hello" and out["MemorySize"] == 256
    result = _aws(env, "invoke", "--function-name", "cli-hello", "--payload", '{"name":"x"}',
                  "--log-type", "Tail", str(tmp_path / "out.json"))
    meta = json.loads(result.stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST"
    assert "hello x" in base64.b64decode(meta["LogResult"]).decode()
    assert json.loads((tmp_path / "out.json").read_text()) == {"hi": "x"}
    listed = json.loads(_aws(env, "list-functions").stdout)
    assert "cli-hello" in [f["FunctionName"] for f in listed["Functions"]]
    missing = _aws(env, "get-function", "--function-name", "nope", check=False)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    _aws(env, "delete-function", "--function-name", "cli-hello")
    bad = _aws(dict(env, AWS_SECRET_ACCESS_KEY="wrong"), "list-functions", check=False)
    assert bad.returncode != 0 and "InvalidSignatureException" in bad.stderr
