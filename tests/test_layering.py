"""Dependencies point one way: the worker runtime loads no tornado, IPython or jupyter_faas."""

import subprocess
import sys

import jupyter_faas


def test_kernel_workers_imports_only_stdlib_and_cloudpickle():
    code = ("import sys, kernel_workers.runtime, kernel_workers.zygote, kernel_workers.wire;"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tornado', 'IPython', 'jupyter_faas', 'ipykernel', 'traitlets', 'psutil')];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_pinned():
    assert sorted(jupyter_faas.__all__) == sorted([
        "__version__", "connect", "function", "RemoteFunction", "Invocation", "InvocationFuture",
        "invocations", "as_completed", "wait", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
        "Report", "FaaSError", "InvocationError", "FunctionError", "InvocationTimeout",
        "OutOfMemory", "RuntimeExited", "Cancelled", "Throttled", "SerializationError",
        "InvalidParameter", "PayloadTooLarge", "ResponseSizeTooLarge", "ResourceNotFound",
        "ServerError",
        "load_ipython_extension"])
    for name in jupyter_faas.__all__:
        assert hasattr(jupyter_faas, name)


def test_wire_version_mismatch_names_both_versions():
    import json
    import struct

    import pytest
    from kernel_workers import wire
    header = json.dumps({"k": "invoke", "v": 99}).encode()
    frame = struct.pack("!II", len(header), 0) + header
    with pytest.raises(wire.ProtocolError,
                       match=f"peer speaks 99, this side speaks {wire.PROTOCOL_VERSION}"):
        wire.unpack(frame)
