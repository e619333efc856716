"""The code node's sandbox: run a user's Python `main(**inputs) -> dict` in a child process, and
check its result against the node's declared outputs (Dify's code node contract).

What this is, honestly. Dify sends code to a separate sandbox service (a Go server running each
call under seccomp, in a chroot, as an unprivileged user). We do not: the code runs in a child of
this process, `python -I -S _sandbox_child.py`, with

- a new session (its own process group, killed as a whole with SIGKILL on every way out),
- an environment of its own (PATH, LANG, LC_ALL, TZ: no `CONDUIT_*`, no database URLs, no keys),
- rlimits it sets on itself before the code runs: CPU seconds, address space, 16 open files,
  no new processes (not enforced for root), no file growth (RLIMIT_FSIZE 0: creating or
  truncating a file is still possible), no core dumps; and an alarm that ends it a second after
  the wall clock, should this process die before killing it,
- a wall clock in the parent, and an output read that stops (and kills) past `output_bytes`,
- an import guard: the code's `__import__` admits only pure modules (`ALLOWED_MODULES` in the
  child), shows them without their module attributes, and `open` is gone.

The process, its limits and its kill are the containment. The import guard is a guard against
mistakes and casual abuse, *not* a security boundary: Python's introspection (`__subclasses__`,
`__globals__`, frames) reaches the real `os` in a few lines, and then the code can read what the
server's user can read and open network connections. Run only code from people you would let run a
script on the server, or put the server itself in a container that holds nothing else.

`run_python` raises `CodeFailed` (its `.message` goes to the node's `error`, its `.kind` says which
limit or failure) and never another exception, except `CancelledError` when the awaiting task is
cancelled (a stopped workflow): the child's group is killed and reaped before it propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import marshal
import math
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from conduit.core.workflow.variables import json_type

CHILD_SCRIPT: Final = Path(__file__).with_name("_sandbox_child.py")
# An answer is the result plus a small envelope; a failure message is at most a few kB.
ENVELOPE_BYTES: Final = 16 * 1024
STDERR_TAIL_BYTES: Final = 4096  # kept to explain a child that died without answering
PARSE_IN_THREAD_BYTES: Final = 256 * 1024  # larger answers are parsed off the event loop

# Output declaration limits (Dify: CODE_MAX_STRING_LENGTH, CODE_MAX_*_ARRAY_LENGTH, CODE_MAX_DEPTH,
# CODE_MAX_NUMBER, CODE_MIN_NUMBER, CODE_MAX_PRECISION). Dify's per-type array limits (30 strings,
# 30 objects, 1000 numbers) are merged into one, larger limit: `output_bytes` bounds the total.
MAX_STRING_LENGTH: Final = 400_000  # characters in one string
MAX_ARRAY_LENGTH: Final = 30_000  # items in one array
MAX_DEPTH: Final = 5  # objects nested in the result, the result itself being level 1
MAX_NUMBER: Final = 2**63 - 1
MIN_NUMBER: Final = -(2**63)
MAX_PRECISION: Final = 20  # decimal places of a float

OUTPUT_TYPES: Final = frozenset(
    {
        "string",
        "number",
        "boolean",
        "object",
        "array[string]",
        "array[number]",
        "array[boolean]",
        "array[object]",
    }
)

FailureKind = Literal[
    "error",  # the code failed: exception, syntax, refused import, no main, not a dict, not JSON
    "cpu_limit",
    "time_limit",
    "memory_limit",
    "output_limit",
    "crashed",  # the child died without answering (a signal, an exit), or could not start
    "invalid_output",  # check_outputs: the result does not match the declared outputs
]


@dataclass(frozen=True)
class CodeLimits:
    """What one call may use. RLIMIT_CPU counts whole seconds: `cpu_seconds` is rounded up."""

    cpu_seconds: float = 5.0  # CPU time of the child (RLIMIT_CPU; the wall clock also applies)
    wall_seconds: float = 10.0  # wall clock for the whole call (a sleeping loop is caught here)
    memory_bytes: int = 256 * 1024 * 1024  # address space of the child (RLIMIT_AS)
    output_bytes: int = 1_000_000  # the result's JSON size; more is a failure, read no further

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "wall_seconds", "memory_bytes", "output_bytes"):
            value = getattr(self, name)
            if not value > 0 or isinstance(value, bool):
                raise ValueError(f"CodeLimits.{name} must be positive, got {value!r}")

    @property
    def cpu_whole_seconds(self) -> int:
        return max(1, math.ceil(self.cpu_seconds))


class CodeFailed(Exception):
    """The code node failed; `message` is for the node's `error`, `kind` names the cause."""

    def __init__(self, message: str, kind: FailureKind = "error") -> None:
        super().__init__(message)
        self.message = message
        self.kind: FailureKind = kind


# --- running -----------------------------------------------------------------------------------


async def run_python(
    code: str, inputs: Mapping[str, Any], limits: CodeLimits = CodeLimits()
) -> dict[str, Any]:
    """Run `code`'s `main(**inputs)` in a limited child process and return the dict it returns."""
    payload = _payload(code, inputs, limits)
    process = await _spawn()
    try:
        async with asyncio.timeout(limits.wall_seconds):
            answer, stderr = await _exchange(process, payload, limits.output_bytes + ENVELOPE_BYTES)
            await process.wait()
    except TimeoutError:
        await _kill_and_reap(process)
        raise CodeFailed(_limit_message("time_limit", limits), "time_limit") from None
    except Exception as exc:  # a failure of this module or of the pipes, not of the code
        await _kill_and_reap(process)
        raise CodeFailed(f"The code sandbox failed: {exc!r}", "crashed") from exc
    except BaseException:  # cancelled (the workflow stopped): leave nothing behind
        await _kill_and_reap(process)
        raise
    finally:
        # Also ends whatever the code may have forked into the group. The group's id cannot be
        # reused while a member lives, so this only reaches our child's descendants.
        _kill_group(process)
    return await _outcome(answer, stderr, process.returncode, limits)


def _payload(code: str, inputs: Mapping[str, Any], limits: CodeLimits) -> bytes:
    if not isinstance(code, str):
        raise CodeFailed(f"The code must be a string, got {type(code).__name__}")
    request = {
        "code": code,
        "inputs": dict(inputs),
        "cpu_seconds": limits.cpu_whole_seconds,
        "memory_bytes": limits.memory_bytes,
        "output_bytes": limits.output_bytes,
        # the child's own clock, for when this process is gone and cannot kill it
        "alarm_seconds": math.ceil(limits.wall_seconds) + 1,
    }
    try:
        return marshal.dumps(request)
    except ValueError:
        for name, value in inputs.items():
            try:
                marshal.dumps(value)
            except ValueError:
                raise CodeFailed(
                    f"Input {name} cannot be passed to the code: it holds a value that is not "
                    "JSON (a number, string, boolean, null, array or object)"
                ) from None
        raise CodeFailed("The inputs cannot be passed to the code") from None


def _child_env() -> dict[str, str]:
    """The child's whole environment: nothing of the server's (no secrets, no database URLs)."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if os.environ.get("TZ"):
        env["TZ"] = os.environ["TZ"]
    return env


async def _spawn() -> asyncio.subprocess.Process:
    if not sys.executable:
        raise CodeFailed("The code sandbox cannot start: no Python interpreter is known", "crashed")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: no PYTHON* variables, no user site, no script directory on sys.path
            "-S",  # no site-packages: the code sees the standard library only, and starts faster
            "-B",
            str(CHILD_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        raise CodeFailed(f"The code sandbox cannot start: {exc}", "crashed") from None


async def _exchange(
    process: asyncio.subprocess.Process, payload: bytes, cap: int
) -> tuple[bytes | None, bytes]:
    """Feed the payload, read the answer (None past `cap`, the child then killed) and the tail
    of stderr, concurrently so that no pipe fills up."""
    assert process.stdin and process.stdout and process.stderr
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_feed(process.stdin, payload))
        stderr = tasks.create_task(_read_tail(process.stderr, STDERR_TAIL_BYTES))
        answer = await _read_at_most(process.stdout, cap)
        if answer is None:
            _kill_group(process)
    return answer, stderr.result()


async def _feed(stdin: asyncio.StreamWriter, payload: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(payload)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def _read_at_most(stream: asyncio.StreamReader, cap: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(64 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    tail = b""
    while chunk := await stream.read(64 * 1024):
        tail = (tail + chunk)[-keep:]
    return tail


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _kill_and_reap(process: asyncio.subprocess.Process) -> None:
    _kill_group(process)
    if process.stdin and not process.stdin.is_closing():
        process.stdin.close()
    await process.wait()


def _limit_message(kind: FailureKind, limits: CodeLimits) -> str:
    if kind == "cpu_limit":
        return f"Code execution hit the CPU time limit of {limits.cpu_whole_seconds} s"
    if kind == "time_limit":
        return f"Code execution hit the time limit of {limits.wall_seconds:g} s"
    if kind == "memory_limit":
        megabytes = limits.memory_bytes / (1024 * 1024)
        return f"Code execution hit the memory limit of {megabytes:g} MB"
    if kind == "output_limit":
        return f"Output is larger than {limits.output_bytes} bytes"
    raise AssertionError(kind)


async def _outcome(
    answer: bytes | None, stderr: bytes, returncode: int | None, limits: CodeLimits
) -> dict[str, Any]:
    """The result, or the CodeFailed that explains the child's answer or its death."""
    if answer is None:
        raise CodeFailed(_limit_message("output_limit", limits), "output_limit")
    if answer:
        envelope = await _parse(answer)
        if envelope is not None:
            if envelope.get("ok") is True and isinstance(envelope.get("result"), dict):
                result: dict[str, Any] = envelope["result"]
                return result
            kind, message = envelope.get("kind"), envelope.get("message")
            if kind in ("cpu_limit", "memory_limit", "output_limit"):
                raise CodeFailed(_limit_message(kind, limits), kind)
            if kind == "error" and isinstance(message, str) and message:
                raise CodeFailed(_printable(message), "error")
        raise CodeFailed("The code sandbox answered something that is not a result", "crashed")
    raise _death(stderr, returncode, limits)


async def _parse(answer: bytes) -> dict[str, Any] | None:
    try:
        if len(answer) > PARSE_IN_THREAD_BYTES:
            envelope = await asyncio.to_thread(json.loads, answer)
        else:
            envelope = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    return envelope if isinstance(envelope, dict) else None


def _death(stderr: bytes, returncode: int | None, limits: CodeLimits) -> CodeFailed:
    """Why a child ended without an answer."""
    if returncode == -signal.SIGXCPU:
        return CodeFailed(_limit_message("cpu_limit", limits), "cpu_limit")
    if returncode == -signal.SIGALRM:
        return CodeFailed(_limit_message("time_limit", limits), "time_limit")
    if b"MemoryError" in stderr:
        return CodeFailed(_limit_message("memory_limit", limits), "memory_limit")
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the system may have run out of memory)" if name == "SIGKILL" else ""
        return CodeFailed(f"Code execution was killed by {name}{hint}", "crashed")
    last_line = _printable(stderr.decode("utf-8", "replace")).strip().rpartition("\n")[2]
    detail = f": {last_line[:300]}" if last_line else ""
    return CodeFailed(
        f"Code execution ended without a result (exit status {returncode}){detail}", "crashed"
    )


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


# --- checking the declared outputs -------------------------------------------------------------


def check_outputs(result: Mapping[str, Any], declared: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply the node's output declaration `{name: {"type": ..., "children": ...}}` to `result`:
    every declared output present and of its type (null is accepted, as Dify does), undeclared
    keys dropped, strings without NUL characters, the size limits above. `declared=None` checks
    the values without a declaration and keeps every key."""
    if declared is None:
        checked = _check_free(dict(result), "", 1)
        assert isinstance(checked, dict)
        return checked
    return _check_declared(result, declared, "", 1)


def _invalid(message: str) -> CodeFailed:
    return CodeFailed(message, "invalid_output")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _spec_field(spec: object, field: str) -> Any:
    """A declaration as a dict (the DSL) or as a model with attributes."""
    if isinstance(spec, Mapping):
        return spec.get(field)
    return getattr(spec, field, None)


_ARTICLES: Final = {"string": "a string", "number": "a number", "boolean": "a boolean"}
_ARTICLES_PLUS: Final = {**_ARTICLES, "object": "an object", "array": "an array"}


def _check_declared(
    result: Mapping[str, Any], declared: Mapping[str, Any], prefix: str, depth: int
) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for name, spec in declared.items():
        path = _join(prefix, str(name))
        if name not in result:
            raise _invalid(f"Output {path} is missing.")
        output_type = _spec_field(spec, "type")
        children = _spec_field(spec, "children")
        checked[name] = _check_declared_value(result[name], output_type, children, path, depth + 1)
    return checked


def _check_declared_value(
    value: Any, output_type: object, children: Any, path: str, depth: int
) -> Any:
    """`depth` is the level `value` has if it is an object."""
    if output_type not in OUTPUT_TYPES:
        raise _invalid(f"Output {path} has an unsupported type {output_type!r}.")
    if value is None:
        return None
    assert isinstance(output_type, str)
    if output_type in _ARTICLES:
        return _check_scalar(value, output_type, path)
    if output_type == "object":
        _expect(value, "object", path)
        return _check_object(value, children, path, depth)
    item_type = output_type[len("array[") : -1]
    _expect(value, "array", path)
    _check_length(value, path)
    items: list[Any] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if item is None and item_type != "number":  # Dify refuses null only in number arrays
            items.append(None)
        elif item_type == "object":
            _expect(item, "object", item_path)
            items.append(_check_object(item, children, item_path, depth))
        else:
            items.append(_check_scalar(item, item_type, item_path))
    return items


def _expect(value: object, expected: str, path: str) -> None:
    actual = json_type(value)
    if actual != expected:
        raise _invalid(f"Output {path} must be {_ARTICLES_PLUS[expected]}, got {actual}.")


def _check_scalar(value: object, expected: str, path: str) -> Any:
    _expect(value, expected, path)
    if expected == "string":
        assert isinstance(value, str)
        return _check_string(value, path)
    if expected == "number":
        assert isinstance(value, int | float)
        return _check_number(value, path)
    return value


def _check_object(value: Mapping[str, Any], children: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _invalid(f"Output {path} is nested more than {MAX_DEPTH} levels deep.")
    if children:
        return _check_declared(value, children, path, depth)
    return _check_free(value, path, depth)


def _check_string(value: str, path: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise _invalid(
            f"Output {path} is {len(value)} characters long, more than the limit of "
            f"{MAX_STRING_LENGTH}."
        )
    return value.replace("\x00", "")


def _check_number(value: int | float, path: str) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(f"Output {path} must be a finite number, got {value!r}.")
    if not MIN_NUMBER <= value <= MAX_NUMBER:
        raise _invalid(
            f"Output {path} is out of range: numbers must be between {MIN_NUMBER} and {MAX_NUMBER}."
        )
    if isinstance(value, float):
        exponent = Decimal(repr(value)).normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_PRECISION:
            raise _invalid(f"Output {path} has more than {MAX_PRECISION} decimal places.")
    return value


def _check_length(value: list[Any] | tuple[Any, ...], path: str) -> None:
    if len(value) > MAX_ARRAY_LENGTH:
        raise _invalid(
            f"Output {path} has {len(value)} items, more than the limit of {MAX_ARRAY_LENGTH}."
        )


def _check_free(value: Any, path: str, depth: int) -> Any:
    """A value without a declaration (an object output without `children`): JSON types, the
    size limits, and arrays whose items share one type. `depth` is `value`'s level as an object."""
    kind = json_type(value)
    if kind in ("null", "boolean"):
        return value
    if kind == "number":
        return _check_number(value, path)
    if kind == "string":
        return _check_string(value, path)
    if kind == "object":
        if depth > MAX_DEPTH:
            raise _invalid(f"Output {path} is nested more than {MAX_DEPTH} levels deep.")
        return {
            key: _check_free(item, _join(path, str(key)), depth + 1) for key, item in value.items()
        }
    if kind == "array":
        _check_length(value, path)
        kinds = {json_type(item) for item in value} - {"null"}
        if len(kinds) > 1:
            raise _invalid(
                f"Output {path} mixes {' and '.join(sorted(kinds))} items; the items of an array "
                "must share one type."
            )
        return [_check_free(item, f"{path}[{index}]", depth) for index, item in enumerate(value)]
    raise _invalid(f"Output {path or 'result'} is a {kind}, which is not a JSON value.")
