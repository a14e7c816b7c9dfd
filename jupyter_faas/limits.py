"""Lambda's limits, validated in one place for the client, the magic and the server."""

from __future__ import annotations

import re

from .errors import InvalidParameter

MEMORY_MIN_MB, MEMORY_MAX_MB, MEMORY_DEFAULT_MB = 128, 10240, 128
TIMEOUT_MIN_S, TIMEOUT_MAX_S, TIMEOUT_DEFAULT_S = 1, 900, 3
#: seconds INIT (a module's top-level code, ``init=``) may take per environment: Lambda's INIT limit
INIT_TIMEOUT_S = 10
ENV_MAX_BYTES = 4096
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Lambda's sync request and response limit; the server's ``max_payload_mb`` raises it.
SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
#: Lambda's limit on an asynchronous invocation's event (1 MB since 2024), on every route
ASYNC_PAYLOAD_BYTES = 1024 * 1024
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


#: Lambda's limit of layers per function
LAYERS_MAX = 5
_LAYER_SPEC = re.compile(r"^(?:arn:[^:]*:lambda:[^:]*:\d{12}:layer:)?([A-Za-z0-9_-]{1,140}):([0-9]+)$")


def parse_layer(spec) -> tuple[str, int]:
    """``"name:version"`` (or a layer version ARN) -> ``(name, version)``."""
    m = _LAYER_SPEC.match(spec) if isinstance(spec, str) else None
    if not m:
        raise InvalidParameter(f"layer {spec!r} is not NAME:VERSION (a published layer version, "
                               f"e.g. 'mylayer:1') or a layer version ARN")
    return m[1], int(m[2])


def check_layers(layers) -> list:
    """A function's layers: at most 5 published layer versions, ``NAME:VERSION`` each, in order."""
    if layers is None:
        return []
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise InvalidParameter(f"layers must be a list of 'NAME:VERSION' strings, not "
                               f"{type(layers).__name__}")
    if len(layers) > LAYERS_MAX:
        raise InvalidParameter(f"layers has {len(layers)} layers; a function takes at most {LAYERS_MAX}")
    for spec in layers:
        parse_layer(spec)
    names = [parse_layer(spec)[0] for spec in layers]
    if len(set(names)) != len(names):
        raise InvalidParameter(f"layers {list(layers)!r} name one layer twice; give one version of each")
    return list(layers)


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


BACKENDS = ("local", "dask")


def check_backend(backend):
    if backend is None or backend in BACKENDS:
        return backend
    raise InvalidParameter(f"backend={backend!r} is not one of {', '.join(BACKENDS)} (or None: "
                           f"the server's default, --FaaSServer.backend)")


def check_config(memory, timeout, env, concurrency, backend=None) -> dict:
    """The validated function configuration, as stored and sent on the wire.

    Raises :class:`InvalidParameter` naming every bad option at once.  ``backend`` is in it
    only when given, so a function that names none keeps its version.
    """
    config = check_options(memory=(check_memory, memory), timeout=(check_timeout, timeout),
                           env=(check_env, env), concurrency=(check_concurrency, concurrency),
                           backend=(check_backend, backend))
    if config["backend"] is None:
        del config["backend"]
    return config


# ---- asynchronous invocation (Lambda's event invoke config; reference/lambda.md §5.1) ----------
#: Lambda allows 0..2 retries; locally up to 10, so a flaky dependency can be ridden out
RETRIES_MIN, RETRIES_MAX, RETRIES_DEFAULT = 0, 10, 2
RETRY_DELAY_MIN_S, RETRY_DELAY_MAX_S, RETRY_DELAY_DEFAULT_S = 0.0, 3600.0, 1.0
EVENT_AGE_MIN_S, EVENT_AGE_MAX_S, EVENT_AGE_DEFAULT_S = 60, 21600, 21600
#: a destination: ``function:<name>``, ``queue:<name>`` or ``dir:<absolute path>``
DESTINATION_KINDS = ("function", "queue", "dir")


def check_retries(retries) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or not (
            RETRIES_MIN <= retries <= RETRIES_MAX):
        raise InvalidParameter(
            f"retries={retries!r} is out of range: give a whole number from {RETRIES_MIN} to "
            f"{RETRIES_MAX} (Lambda allows 0 to 2; this server allows up to {RETRIES_MAX})")
    return retries


def check_retry_delay(delay) -> float:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not (
            RETRY_DELAY_MIN_S <= delay <= RETRY_DELAY_MAX_S):
        raise InvalidParameter(
            f"retry_delay={delay!r} is out of range: give seconds from {RETRY_DELAY_MIN_S:g} to "
            f"{RETRY_DELAY_MAX_S:g} before the first retry (it doubles after each)")
    return float(delay)


def check_max_event_age(age) -> int:
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not (
            EVENT_AGE_MIN_S <= age <= EVENT_AGE_MAX_S):
        raise InvalidParameter(
            f"max_event_age={age!r} is out of range: give seconds from {EVENT_AGE_MIN_S} to "
            f"{EVENT_AGE_MAX_S} (Lambda's MaximumEventAgeInSeconds)")
    return int(age)


def check_destination(which: str, target) -> str | None:
    """``None`` or ``'function:<name>'``, ``'queue:<name>'``, ``'dir:<absolute path>'``."""
    if target is None:
        return None
    kind, _, rest = target.partition(":") if isinstance(target, str) else ("", "", "")
    if kind not in DESTINATION_KINDS or not rest:
        raise InvalidParameter(
            f"{which}={target!r} is not a destination: give a function (a handle or its name), "
            f"a queue (faas.queue(...)) or a directory path")
    if kind in ("function", "queue"):
        if not NAME_RE.match(rest):
            raise InvalidParameter(f"{which}={target!r}: {rest!r} is not a valid {kind} name")
    elif not rest.startswith("/"):
        raise InvalidParameter(f"{which}={target!r}: a directory destination needs an absolute path")
    return target


def check_event_config(retries=RETRIES_DEFAULT, retry_delay=RETRY_DELAY_DEFAULT_S,
                       max_event_age=EVENT_AGE_DEFAULT_S, on_success=None, on_failure=None) -> dict:
    """A function's validated event invoke config (what ``invoke_async`` and triggers obey).

    Raises :class:`InvalidParameter` naming every bad option at once.
    """
    return check_options(
        retries=(check_retries, retries), retry_delay=(check_retry_delay, retry_delay),
        max_event_age=(check_max_event_age, max_event_age),
        on_success=(lambda t: check_destination("on_success", t), on_success),
        on_failure=(lambda t: check_destination("on_failure", t), on_failure))
