"""The code node's child process: run one user `main(**inputs)` under resource limits, answer JSON.

`conduit.core.workflow.sandbox.run_python` starts this file by path (`python -I -S <file>`) in a
new session; it is never imported as part of the `conduit` package. It loads only modules built
into the interpreter (`sys`, `builtins`, `marshal`, `posix`, `resource`, `_json`), so a call costs
one bare interpreter start, and nothing of the server (settings, secrets, dependencies) is in it.

Protocol. stdin: one `marshal` payload written by the parent (trusted; marshal is never read the
other way) `{"code", "inputs", "cpu_seconds", "memory_bytes", "output_bytes", "alarm_seconds"}`.
stdout: one JSON
object, `{"ok": true, "result": {...}}` or `{"ok": false, "kind": ..., "message": ...}`. What the
user's code prints is discarded.

Before the user's code runs, this process lowers its own hard limits (the code cannot raise them
again): RLIMIT_CPU (SIGXCPU, then SIGKILL a second later), RLIMIT_AS, RLIMIT_NOFILE, RLIMIT_NPROC 0
(refuses fork, except to root), RLIMIT_FSIZE 0 (writing a file fails) and RLIMIT_CORE 0. An
`alarm()` a second past the parent's wall clock ends the process should the parent be gone.

The import guard is a guard against mistakes and casual abuse, not a security boundary: the code
gets builtins whose `__import__` admits only `ALLOWED_MODULES` (views of them, without their module
attributes such as `random._os` or their `__builtins__`), no `open`, `input` or `breakpoint`.
Python's introspection (`__globals__`, `__subclasses__`, frames) still reaches everything in this
process; the containment that holds is the process itself, its limits, its empty environment and the
parent's kill of its process group. See `sandbox.py`.
"""

import _signal  # type: ignore[import-not-found]  # built in; `signal` would import enum
import builtins
import marshal
import resource
import sys

# typing is not imported at run time (it costs milliseconds per call); mypy reads this as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

CODE_FILENAME = "<code>"
OPEN_FILES = 16  # enough for the interpreter to import a few allowed modules
MESSAGE_CHARS = 1000  # an exception's own message is cut here
SOURCE_LINE_CHARS = 120  # the quoted line of the user's code is cut here

# Full dotted names the code may import. Pure computation only: nothing that reaches the file
# system, the network, processes, threads, signals, the interpreter (sys, gc, inspect) or the import
# system (importlib, builtins). `io` is narrowed to its in-memory streams.
ALLOWED_MODULES = frozenset(
    {
        "__future__",
        "abc",
        "base64",
        "binascii",
        "bisect",
        "calendar",
        "cmath",
        "collections",
        "collections.abc",
        "copy",
        "csv",
        "dataclasses",
        "datetime",
        "decimal",
        "difflib",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "hmac",
        "html",
        "html.entities",
        "html.parser",
        "io",
        "ipaddress",
        "itertools",
        "json",
        "json.decoder",
        "json.encoder",
        "math",
        "numbers",
        "operator",
        "pprint",
        "random",
        "re",
        "secrets",
        "statistics",
        "string",
        "struct",
        "textwrap",
        "time",
        "typing",
        "unicodedata",
        "urllib",
        "urllib.parse",
        "uuid",
        "zlib",
        "zoneinfo",
    }
)
# Modules the code sees only part of.
NARROWED_MODULES = {"io": ("StringIO", "BytesIO")}
# Module dunders a view keeps; the others (`__builtins__`, `__loader__`, `__spec__`, `__path__`,
# `__getattr__`...) lead back to the real interpreter.
VIEW_DUNDERS = frozenset({"__name__", "__doc__", "__all__"})
# Builtins the code does not get: the import system's handles, stdin readers, the debugger.
REMOVED_BUILTINS = (
    "__loader__",
    "__spec__",
    "breakpoint",
    "input",
    "help",
    "exit",
    "quit",
    "copyright",
    "credits",
    "license",
)

_ModuleType = type(sys)
_real_import = builtins.__import__


class _Discard:
    """Where the user's prints go."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


class _ImportGuard:
    """The `__import__` of the user's code: allowed modules only, each seen through a view."""

    def __init__(self) -> None:
        self._views: dict[str, ModuleType] = {}

    def __call__(
        self,
        name: str,
        globals: object = None,
        locals: object = None,
        fromlist: "tuple[str, ...] | list[str] | None" = (),
        level: int = 0,
    ) -> "ModuleType":
        if level:
            raise ImportError("relative imports are not allowed")
        if name not in ALLOWED_MODULES:
            raise ImportError(f"import of '{name}' is not allowed")
        _real_import(name)
        module = sys.modules[name]
        wanted = [item for item in fromlist or () if item != "*"]
        for item in wanted:
            dotted = f"{name}.{item}"
            if dotted in ALLOWED_MODULES:
                _real_import(dotted)
            elif hasattr(module, "__path__") and not _is_public_value(module, item):
                # A submodule that is not allowed (`from urllib import request`).
                raise ImportError(f"import of '{dotted}' is not allowed")
        if fromlist:
            return self.view(module)
        return self.view(sys.modules[name.partition(".")[0]])

    def view(self, module: "ModuleType", refreshed: set[str] | None = None) -> "ModuleType":
        """A module object holding `module`'s values, its module attributes replaced by views of
        the allowed ones; refreshed once per import (a submodule may have been loaded since)."""
        name = module.__name__
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = _ModuleType(name, module.__doc__)
        if refreshed is None:
            refreshed = set()
        if name in refreshed:  # modules may refer to each other
            return view
        refreshed.add(name)
        contents: dict[str, object] = {}
        if name in NARROWED_MODULES:
            for key in NARROWED_MODULES[name]:
                contents[key] = getattr(module, key)
        else:
            for key, value in list(vars(module).items()):
                if key.startswith("__") and key not in VIEW_DUNDERS:
                    continue
                if isinstance(value, _ModuleType):
                    if value.__name__ in ALLOWED_MODULES:
                        contents[key] = self.view(value, refreshed)
                    continue
                contents[key] = value
        vars(view).update(contents)
        return view


def _is_public_value(module: "ModuleType", item: str) -> bool:
    value = getattr(module, item, _ModuleType)  # the sentinel is itself "not a value"
    return value is not _ModuleType and not isinstance(value, _ModuleType)


def _refuse_open(*args: object, **kwargs: object) -> None:
    raise PermissionError("open() is not allowed: the code node has no file access")


def _guarded_builtins(guard: _ImportGuard) -> dict[str, object]:
    names = dict(vars(builtins))
    for name in REMOVED_BUILTINS:
        names.pop(name, None)
    names["__import__"] = guard
    names["open"] = _refuse_open
    return names


def _limit(kind: int, soft: int, hard: int) -> None:
    current_hard = resource.getrlimit(kind)[1]
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (soft, hard))


def apply_limits(cpu_seconds: int, memory_bytes: int) -> None:
    """Lower this process's hard limits before the user's code runs."""
    _limit(resource.RLIMIT_CORE, 0, 0)
    _limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _limit(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    _limit(resource.RLIMIT_FSIZE, 0, 0)
    _limit(resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES)
    _limit(resource.RLIMIT_NPROC, 0, 0)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _at_line(code: str, lineno: int | None) -> str:
    if not lineno or lineno < 1:
        return ""
    lines = code.split("\n")
    source = lines[lineno - 1].strip() if lineno <= len(lines) else ""
    if not source:
        return f" (line {lineno})"
    return f" (line {lineno}: {_clip(source, SOURCE_LINE_CHARS)})"


def describe_exception(exc: BaseException, code: str) -> str:
    """`Type: message (line N: source)`, the line being the last one of the user's code."""
    name = type(exc).__name__
    if isinstance(exc, SyntaxError):
        text = exc.msg or ""
        lineno = exc.lineno if exc.filename == CODE_FILENAME else None
    else:
        try:
            text = str(exc)
        except Exception:
            text = "(the message could not be shown)"
        lineno = None
        frame = exc.__traceback__
        while frame is not None:
            if frame.tb_frame.f_code.co_filename == CODE_FILENAME:
                lineno = frame.tb_lineno
            frame = frame.tb_next
    text = _clip(text, MESSAGE_CHARS)
    return (f"{name}: {text}" if text else name) + _at_line(code, lineno)


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_encoder() -> "tuple[Callable[[object], list[str]], Callable[[str], str]]":
    """The C encoder of `json` without importing `json` (and `re` with it: half the start-up)."""
    try:
        import _json

        iterencode = _json.make_encoder(
            {}, _not_json, _json.encode_basestring, None, ":", ",", False, False, False
        )
        quote = _json.encode_basestring_ascii

        def encode(value: object) -> list[str]:
            return list(iterencode(value, 0))

        quote('"')
        encode({"probe": [1, 2.5, True, None]})
    except (ImportError, AttributeError, TypeError):  # another interpreter: the slow, sure way
        import json

        def encode(value: object) -> list[str]:
            text = json.dumps(
                value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_not_json
            )
            return [text]

        def quote(text: str) -> str:
            return json.dumps(text)

    return encode, quote


encode_chunks, _quote = _make_encoder()


def failure(kind: str, message: str) -> bytes:
    return ('{"ok":false,"kind":' + _quote(kind) + ',"message":' + _quote(message) + "}").encode()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def explain_not_json(value: object, path: str = "", seen: set[int] | None = None) -> str | None:
    """Why `value` cannot be JSON, naming where (`Output a.b[2] is a set ...`); None if it can."""
    if seen is None:
        seen = set()
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"Output {path} is {value!r}, which JSON cannot represent"
        return None
    if isinstance(value, dict | list | tuple):
        if id(value) in seen:
            return f"Output {path} contains itself"
        if len(seen) > 200:
            return f"Output {path} is nested too deeply"
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not (key is None or isinstance(key, str | int | float | bool)):
                    return f"Output {path or 'result'} has a key of type {type(key).__name__}"
                reason = explain_not_json(item, _join(path, str(key)), seen)
                if reason:
                    return reason
        else:
            for index, item in enumerate(value):
                reason = explain_not_json(item, f"{path}[{index}]", seen)
                if reason:
                    return reason
        seen.discard(id(value))
        return None
    return f"Output {path} is a {type(value).__name__}, which is not a JSON value"


def _text_exceeds(value: object, budget: int) -> bool:
    """Whether the strings in `value` alone are longer than `budget` (allocates little)."""
    pending, seen = [value], set()
    try:
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                budget -= len(item)
                if budget < 0:
                    return True
            elif isinstance(item, dict | list | tuple) and id(item) not in seen:
                seen.add(id(item))  # the result holds every container: ids stay unique
                if isinstance(item, dict):
                    pending.extend(item.keys())
                    pending.extend(item.values())
                else:
                    pending.extend(item)
    except MemoryError:
        return False
    return False


def encode_result(result: dict[object, object], output_bytes: int) -> bytes:
    """The success answer, or the failure saying why the result cannot be sent."""
    try:
        chunks = encode_chunks(result)
        # Characters never outnumber UTF-8 bytes: a result too large is refused before joining.
        if sum(map(len, chunks)) > output_bytes:
            return failure("output_limit", "")
        data = "".join(chunks).encode("utf-8")
    except MemoryError:
        # Encoding copies the result: a result far over the output limit runs out of memory first.
        if _text_exceeds(result, output_bytes):
            return failure("output_limit", "")
        return failure("memory_limit", "")
    except RecursionError:
        return failure("error", "The result is nested too deeply to be JSON")
    except UnicodeEncodeError:
        return failure("error", "The result contains text that is not valid Unicode")
    except (TypeError, ValueError) as exc:
        reason = explain_not_json(result)
        return failure("error", reason or f"The result is not JSON: {_clip(str(exc), 200)}")
    if len(data) > output_bytes:
        return failure("output_limit", "")
    return b'{"ok":true,"result":' + data + b"}"


def run_code(code: str, inputs: dict[str, object], output_bytes: int) -> bytes:
    """Compile and run the user's code, call `main(**inputs)`, answer with the encoded outcome."""
    try:
        compiled = compile(code, CODE_FILENAME, "exec")
    except MemoryError:
        return failure("memory_limit", "")
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError
        return failure("error", describe_exception(exc, code))
    namespace: dict[str, object] = {
        "__builtins__": _guarded_builtins(_ImportGuard()),
        "__name__": "__main__",
    }
    outcome: bytes | None = None
    result: object = None
    streams = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _Discard()
    try:
        exec(compiled, namespace)  # noqa: S102 - running the user's code is this process's job
        function = namespace.get("main")
        if not callable(function):
            outcome = failure("error", "The code must define a function main")
        else:
            result = function(**inputs)
    except MemoryError:
        outcome = failure("memory_limit", "")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the user's failures too
        outcome = failure("error", describe_exception(exc, code))
    finally:
        sys.stdout, sys.stderr = streams
    if outcome is not None:
        return outcome
    if not isinstance(result, dict):
        shown = "None" if result is None else type(result).__name__
        return failure("error", f"main() must return a dict, got {shown}")
    return encode_result(result, output_bytes)


def arm_alarm(seconds: int) -> None:
    """SIGALRM (its default action ends the process; the code cannot import `signal` to change
    that) in `seconds`: a sleeping child does not outlive a parent that died before killing it."""
    _signal.alarm(seconds)


def main() -> None:
    channel = sys.stdout.buffer
    request = marshal.loads(sys.stdin.buffer.read())  # noqa: S302 - written by the parent
    arm_alarm(int(request["alarm_seconds"]))
    apply_limits(int(request["cpu_seconds"]), int(request["memory_bytes"]))
    answer = run_code(request["code"], request["inputs"], int(request["output_bytes"]))
    channel.write(answer)
    channel.flush()


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        import traceback

        traceback.print_exc()  # the parent keeps the tail of stderr for its message
        sys.stderr.flush()
        raise SystemExit(70) from None
    import posix

    # Skip interpreter teardown: it only costs time, and would run the code's finalizers.
    posix._exit(0)
