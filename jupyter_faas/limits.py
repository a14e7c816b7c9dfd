"""Lambda's limits, validated in one place for the client, the magic and the server."""

from __future__ import annotations

import re

from .errors import InvalidParameter

MEMORY_MIN_MB, MEMORY_MAX_MB, MEMORY_DEFAULT_MB = 128, 10240, 128
TIMEOUT_MIN_S, TIMEOUT_MAX_S, TIMEOUT_DEFAULT_S = 1, 900, 3
ENV_MAX_BYTES = 4096
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Lambda's sync request and response limit; the server's ``max_payload_mb`` raises it.
SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
#: Lambda reserves these environment variables; a function may not set them.
RESERVED_ENV = frozenset({
    "_HANDLER", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidParameter(
            f"invalid function name {name!r}: use 1 to 64 letters, digits, '-' or '_' "
            f"(for a lambda expression pass name=...)")
    return name


def check_memory(memory) -> int:
    if isinstance(memory, bool) or not isinstance(memory, int) or not (
            MEMORY_MIN_MB <= memory <= MEMORY_MAX_MB):
        raise InvalidParameter(
            f"memory={memory!r} is out of range: give a whole number of MB from "
            f"{MEMORY_MIN_MB} to {MEMORY_MAX_MB}")
    return memory


def check_timeout(timeout) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            TIMEOUT_MIN_S <= timeout <= TIMEOUT_MAX_S):
        raise InvalidParameter(
            f"timeout={timeout!r} is out of range: give seconds from {TIMEOUT_MIN_S} to {TIMEOUT_MAX_S}")
    return float(timeout)


def check_concurrency(concurrency):
    if concurrency is None:
        return None
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0:
        raise InvalidParameter(
            f"concurrency={concurrency!r} is invalid: give a whole number >= 0 (reserved "
            f"concurrent executions) or None for no reservation")
    return concurrency


def check_env(env) -> dict:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise InvalidParameter(f"env must be a dict of str to str, not {type(env).__name__}")
    out, problems = {}, []
    for key, value in env.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            problems.append(f"env key {key!r} is not a valid environment variable name")
        elif key in RESERVED_ENV:
            problems.append(f"env key {key!r} is reserved by the runtime; choose another name")
        elif not isinstance(value, str):
            problems.append(f"env[{key!r}] must be a str, not {type(value).__name__}")
        else:
            out[key] = value
    size = sum(len(k) + len(v) for k, v in out.items())
    if size > ENV_MAX_BYTES:
        problems.append(f"env is {size} bytes; the limit is {ENV_MAX_BYTES} bytes in total")
    if problems:
        raise InvalidParameter("; ".join(problems))
    return out


def check_options(**checks) -> dict:
    """Run every ``name=(check, value)`` and return ``{name: checked value}``.

    Raises one :class:`InvalidParameter` that lists every problem, not just the first.
    """
    out, problems = {}, []
    for key, (check, value) in checks.items():
        try:
            out[key] = check(value)
        except InvalidParameter as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise InvalidParameter(problems[0])
    if problems:
        raise InvalidParameter(f"{len(problems)} invalid options: " + "; ".join(problems))
    return out


def check_config(memory, timeout, env, concurrency) -> dict:
    """The validated function configuration, as stored and sent on the wire.

    Raises :class:`InvalidParameter` naming every bad option at once.
    """
    return check_options(memory=(check_memory, memory), timeout=(check_timeout, timeout),
                         env=(check_env, env), concurrency=(check_concurrency, concurrency))
