"""The code node's sandbox (`conduit/core/workflow/sandbox.py` and its child process). Every case runs
real child processes; the cases about the parent's handling of a broken child run a small script
in the child's place. After each case no child process may be left, zombie or not."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import marshal
import math
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import psutil
import pytest

from conduit.core.workflow import sandbox
from conduit.core.workflow.sandbox import (
    MAX_ARRAY_LENGTH,
    MAX_STRING_LENGTH,
    CodeFailed,
    CodeLimits,
    check_outputs,
    run_python,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    yield
    leftovers = psutil.Process().children(recursive=True)
    assert leftovers == [], [(p.pid, p.status(), p.cmdline()) for p in leftovers]


def run(code: str, inputs: dict[str, Any] | None = None, limits: CodeLimits = CodeLimits()) -> Any:
    return asyncio.run(run_python(textwrap.dedent(code), inputs or {}, limits))


def failure(
    code: str,
    kind: str,
    inputs: dict[str, Any] | None = None,
    limits: CodeLimits = CodeLimits(),
) -> str:
    with pytest.raises(CodeFailed) as caught:
        run(code, inputs, limits)
    assert caught.value.kind == kind, caught.value.message
    assert str(caught.value) == caught.value.message
    return caught.value.message


@pytest.fixture
def fake_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run a given script in the child's place (same interpreter flags, env and session)."""

    def install(source: str) -> None:
        script = tmp_path / "fake_child.py"
        script.write_text(textwrap.dedent(source))
        monkeypatch.setattr(sandbox, "CHILD_SCRIPT", script)

    return install


def load_child_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_child_probe", sandbox.CHILD_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- running the code --------------------------------------------------------------------------


def test_main_gets_the_inputs_as_keyword_arguments() -> None:
    code = """
        def main(a: int, b: int, name: str = "x") -> dict:
            return {"sum": a + b, "name": name}
    """
    assert run(code, {"a": 1, "b": 2, "name": "né ✓"}) == {"sum": 3, "name": "né ✓"}


def test_json_values_round_trip() -> None:
    value = {
        "int": 2**62,
        "float": 0.1,
        "text": '日本語 "quoted" \\ \n',
        "flag": False,
        "none": None,
        "list": [1, [2, {"deep": True}]],
        "object": {"k": "v"},
    }
    code = """
        def main(value):
            return dict(value, tuple=(1, 2))
    """
    assert run(code, {"value": value}) == {**value, "tuple": [1, 2]}


def test_prints_are_discarded() -> None:
    code = """
        def main():
            print("noise")
            print("more", file=None)
            return {"ok": True}
    """
    assert run(code) == {"ok": True}


def test_large_inputs_reach_the_code() -> None:
    text = "x" * 3_000_000
    assert run("def main(text):\n    return {'n': len(text)}", {"text": text}) == {"n": 3_000_000}


def test_calls_run_concurrently() -> None:
    async def scenario() -> list[dict[str, Any]]:
        code = "def main(n):\n    return {'n': n * 2}"
        return await asyncio.gather(*(run_python(code, {"n": n}) for n in range(4)))

    assert asyncio.run(scenario()) == [{"n": 0}, {"n": 2}, {"n": 4}, {"n": 6}]


def test_inputs_that_are_not_json_values_are_refused() -> None:
    with pytest.raises(CodeFailed) as caught:
        asyncio.run(run_python("def main(when):\n    return {}", {"when": object()}))
    assert caught.value.kind == "error"
    assert caught.value.message.startswith("Input when cannot be passed to the code")


# --- the code's own failures -------------------------------------------------------------------


def test_a_syntax_error_names_the_line() -> None:
    message = failure("x = 1\ndef main(:\n    return {}", "error")
    assert message == "SyntaxError: invalid syntax (line 2: def main(:)"


def test_an_exception_names_its_type_message_and_line() -> None:
    code = """
        def main(a):
            b = a + 1
            return {"x": b / 0}
    """
    message = failure(code, "error", {"a": 1})
    assert message == 'ZeroDivisionError: division by zero (line 4: return {"x": b / 0})'


def test_an_exception_deep_in_a_call_names_the_last_line_of_the_code() -> None:
    code = """
        import json

        def main():
            return json.loads("{not json")
    """
    message = failure(code, "error")
    assert message.startswith("JSONDecodeError: Expecting property name")
    assert message.endswith('(line 5: return json.loads("{not json"))')


def test_wrong_inputs_for_main() -> None:
    message = failure("def main(a):\n    return {}", "error", {"b": 1})
    assert message == "TypeError: main() got an unexpected keyword argument 'b'"


def test_the_code_must_define_main() -> None:
    assert failure("x = 1", "error") == "The code must define a function main"
    assert failure("main = 3", "error") == "The code must define a function main"


@pytest.mark.parametrize(
    ("returned", "shown"), [("[1]", "list"), ("None", "None"), ("'text'", "str")]
)
def test_main_must_return_a_dict(returned: str, shown: str) -> None:
    message = failure(f"def main():\n    return {returned}", "error")
    assert message == f"main() must return a dict, got {shown}"


def test_system_exit_is_the_codes_failure() -> None:
    message = failure("def main():\n    raise SystemExit(3)", "error")
    assert message == "SystemExit: 3 (line 2: raise SystemExit(3))"


def test_deep_recursion_is_the_codes_failure() -> None:
    code = """
        def down(n):
            return down(n + 1)

        def main():
            return down(0)
    """
    message = failure(code, "error")
    assert (
        message == "RecursionError: maximum recursion depth exceeded (line 3: return down(n + 1))"
    )


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("{'when': datetime.datetime(2024, 1, 1)}", "Output when is a datetime, which is not"),
        ("{'a': {'b': [1, {2, 3}]}}", "Output a.b[1] is a set, which is not"),
        ("{'x': float('nan')}", "Output x is nan, which JSON cannot represent"),
        ("{'x': {(1, 2): 'tuple key'}}", "Output x has a key of type tuple"),
    ],
)
def test_a_result_that_is_not_json_names_the_output(returned: str, message: str) -> None:
    code = f"import datetime\n\ndef main():\n    return {returned}"
    assert failure(code, "error").startswith(message)


def test_a_result_nested_too_deeply_for_json() -> None:
    code = """
        def main():
            x = []
            for _ in range(5000):
                x = [x]
            return {"x": x}
    """
    assert failure(code, "error") == "The result is nested too deeply to be JSON"


# --- the import guard --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        "os",
        "sys",
        "subprocess",
        "socket",
        "shutil",
        "ctypes",
        "multiprocessing",
        "threading",
        "signal",
        "importlib",
        "builtins",
        "pathlib",
        "tempfile",
        "gc",
        "inspect",
        "urllib.request",
        "http.client",
        "asyncio",
        "pickle",
    ],
)
def test_modules_that_reach_the_system_are_refused(module: str) -> None:
    message = failure(f"import {module}\n\ndef main():\n    return {{}}", "error")
    assert message == f"ImportError: import of '{module}' is not allowed (line 1: import {module})"


@pytest.mark.parametrize(
    ("statement", "module"),
    [
        ("__import__('os')", "os"),
        ("eval(\"__import__('subprocess')\")", "subprocess"),
        ("exec('import socket', {})", "socket"),
        ("__builtins__['__import__']('ctypes')", "ctypes"),
        ("from os import path", "os"),
        ("from urllib import request", "urllib.request"),
        ("import os.path", "os.path"),
    ],
)
def test_import_tricks_are_refused(statement: str, module: str) -> None:
    message = failure(f"def main():\n    {statement}\n    return {{}}", "error")
    assert message.startswith(f"ImportError: import of '{module}' is not allowed (line 2: ")


def test_relative_imports_are_refused() -> None:
    message = failure("from . import x\n\ndef main():\n    return {}", "error")
    assert message.startswith("ImportError: relative imports are not allowed (line 1")


def test_the_usual_pure_modules_import() -> None:
    code = """
        from __future__ import annotations

        import base64, collections, copy, csv, datetime, decimal, functools, hashlib, io
        import itertools, json, math, random, re, statistics, string, textwrap, time, typing
        import urllib.parse, uuid
        from collections import OrderedDict
        from urllib import parse

        def main() -> dict:
            rows = list(csv.reader(io.StringIO("a,b\\n1,2")))
            return {
                "rows": rows,
                "b64": base64.b64encode(b"hi").decode(),
                "sha": hashlib.sha256(b"x").hexdigest()[:8],
                "quoted": urllib.parse.quote("a b") + parse.quote("/"),
                "mean": statistics.mean([1, 2, 3]),
                "sqrt": math.sqrt(16),
                "json": json.dumps({"a": 1}),
                "re": re.sub(r"\\d", "#", "a1"),
                "dec": str(decimal.Decimal("1.10") + 1),
                "when": datetime.date(2024, 1, 2).isoformat(),
                "uuid": len(str(uuid.uuid4())),
                "od": list(OrderedDict(a=1)),
            }
    """
    assert run(code) == {
        "rows": [["a", "b"], ["1", "2"]],
        "b64": "aGk=",
        "sha": "2d711642",
        "quoted": "a%20b/",
        "mean": 2,
        "sqrt": 4.0,
        "json": '{"a": 1}',
        "re": "a#",
        "dec": "2.10",
        "when": "2024-01-02",
        "uuid": 36,
        "od": ["a"],
    }


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("random._os", "AttributeError: module 'random' has no attribute '_os'"),
        ("uuid.os", "AttributeError: module 'uuid' has no attribute 'os'"),
        ("json.__builtins__", "AttributeError: module 'json' has no attribute '__builtins__'"),
        ("io.open", "AttributeError: module 'io' has no attribute 'open'"),
        ("__loader__", "NameError: name '__loader__' is not defined"),
    ],
)
def test_allowed_modules_do_not_lead_to_the_system(expression: str, error: str) -> None:
    code = f"import io, json, random, uuid\n\ndef main():\n    return {{'x': {expression}}}"
    assert failure(code, "error").startswith(error)


def test_views_of_modules_that_refer_to_each_other() -> None:
    child = load_child_module()
    first, second = ModuleType("json"), ModuleType("re")
    first.other, second.other = second, first  # type: ignore[attr-defined]
    first.value = 1  # type: ignore[attr-defined]
    view = child._ImportGuard().view(first)
    assert view.value == 1
    assert view.other.other is view


@pytest.mark.parametrize("mode", ["r", "w"])
def test_open_is_refused(mode: str) -> None:
    message = failure(f"def main():\n    open('/etc/hostname', '{mode}')", "error")
    assert message.startswith("PermissionError: open() is not allowed")


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_an_endless_loop_hits_the_cpu_limit() -> None:
    limits = CodeLimits(cpu_seconds=1, wall_seconds=20)
    message = failure("def main():\n    while True:\n        pass", "cpu_limit", limits=limits)
    assert message == "Code execution hit the CPU time limit of 1 s"


@pytest.mark.timeout(30)
def test_a_sleeping_loop_hits_the_wall_clock() -> None:
    code = """
        import time

        def main():
            while True:
                time.sleep(0.05)
    """
    limits = CodeLimits(wall_seconds=0.5)
    message = failure(code, "time_limit", limits=limits)
    assert message == "Code execution hit the time limit of 0.5 s"


@pytest.mark.parametrize(
    "code",
    [
        "def main():\n    return {'n': len(bytearray(512 * 1024 * 1024))}",
        "def main():\n    kept = []\n    while True:\n        kept.append(' ' * 10**6)",
    ],
)
def test_allocating_too_much_hits_the_memory_limit(code: str) -> None:
    limits = CodeLimits(memory_bytes=128 * 1024 * 1024)
    message = failure(code, "memory_limit", limits=limits)
    assert message == "Code execution hit the memory limit of 128 MB"


@pytest.mark.parametrize("size", [1_000_001, 2_000_000, 100_000_000])
def test_a_large_result_hits_the_output_limit(size: int) -> None:
    code = f"def main():\n    return {{'x': 'a' * {size}}}"
    assert failure(code, "output_limit") == "Output is larger than 1000000 bytes"


def test_a_result_just_within_the_output_limit_passes() -> None:
    # {"x":"aaa..."} is 8 bytes of JSON around the string
    assert run("def main():\n    return {'x': 'a' * 999_992}") == {"x": "a" * 999_992}


def test_the_output_limit_counts_utf8_bytes() -> None:
    limits = CodeLimits(output_bytes=1000)
    assert failure("def main():\n    return {'x': 'é' * 600}", "output_limit", limits=limits)


def test_the_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        CodeLimits(cpu_seconds=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        CodeLimits(memory_bytes=-1)


# --- stop --------------------------------------------------------------------------------------


def sandbox_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children():
        try:
            if any("child" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def wait_for_child() -> int:
    for _ in range(500):
        children = sandbox_children()
        if children:
            return children[0].pid
        await asyncio.sleep(0.01)
    raise AssertionError("the sandbox child did not start")


@pytest.mark.timeout(30)
def test_a_stop_kills_the_child_at_once() -> None:
    code = "import time\n\ndef main():\n    while True:\n        time.sleep(0.05)"

    async def scenario() -> tuple[int, float]:
        task = asyncio.create_task(run_python(code, {}, CodeLimits(wall_seconds=60)))
        pid = await wait_for_child()
        await asyncio.sleep(0.2)  # the child is inside main()
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid, time.monotonic() - started

    pid, took = asyncio.run(scenario())
    assert not psutil.pid_exists(pid)  # killed and reaped before CancelledError came out
    assert took < 2.0  # generous: a SIGKILL and a wait take milliseconds


# --- the child process itself ------------------------------------------------------------------


def test_the_child_gets_no_secrets_and_its_own_session(
    fake_child: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDUIT_SECRET_KEY", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pw@db/conduit")
    monkeypatch.setenv("REDIS_URL", "redis://secret@redis")
    fake_child("""
        import json, os, sys
        sys.stdin.buffer.read()
        result = {
            "env": dict(os.environ),
            "own_session": os.getsid(0) == os.getpid() == os.getpgid(0),
            "isolated": sys.flags.isolated,
            "no_site": sys.flags.no_site,
            "cwd": os.getcwd(),
        }
        sys.stdout.write(json.dumps({"ok": True, "result": result}))
    """)
    result = run("")
    assert set(result["env"]) <= {"PATH", "LANG", "LC_ALL", "TZ"}
    assert "s3cret" not in json.dumps(result["env"])
    assert result["own_session"] is True
    assert result["isolated"] == 1
    assert result["no_site"] == 1
    assert result["cwd"] == "/"


def test_the_child_lowers_its_own_limits(fake_child: Any) -> None:
    fake_child(f"""
        import importlib.util, json, marshal, resource, sys
        spec = importlib.util.spec_from_file_location("child", {str(sandbox.CHILD_SCRIPT)!r})
        child = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(child)
        request = marshal.loads(sys.stdin.buffer.read())
        child.apply_limits(request["cpu_seconds"], request["memory_bytes"])
        names = ["CPU", "AS", "NOFILE", "NPROC", "FSIZE", "CORE"]
        result = {{name: resource.getrlimit(getattr(resource, "RLIMIT_" + name)) for name in names}}
        sys.stdout.write(json.dumps({{"ok": True, "result": result}}))
    """)
    limits = CodeLimits(cpu_seconds=2.5, memory_bytes=100 * 1024 * 1024)
    assert run("", limits=limits) == {
        "CPU": [3, 4],
        "AS": [100 * 1024 * 1024] * 2,
        "NOFILE": [16, 16],
        "NPROC": [0, 0],
        "FSIZE": [0, 0],
        "CORE": [0, 0],
    }


@pytest.mark.timeout(30)
def test_a_child_whose_parent_is_gone_ends_itself() -> None:
    """Run the real child without the parent's wall clock: its alarm ends a sleeping main()."""
    payload = marshal.dumps(
        {
            "code": "import time\n\ndef main():\n    time.sleep(30)\n    return {}",
            "inputs": {},
            "cpu_seconds": 5,
            "memory_bytes": 256 * 1024 * 1024,
            "output_bytes": 1000,
            "alarm_seconds": 1,
        }
    )
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-I", "-S", str(sandbox.CHILD_SCRIPT)],
        input=payload,
        capture_output=True,
        timeout=20,
    )
    assert child.returncode == -signal.SIGALRM
    assert child.stdout == b""
    assert time.monotonic() - started < 10


def test_a_direct_call_of_the_child_answers_json() -> None:
    payload = marshal.dumps(
        {
            "code": "def main(a):\n    return {'b': a * 2}",
            "inputs": {"a": 21},
            "cpu_seconds": 5,
            "memory_bytes": 256 * 1024 * 1024,
            "output_bytes": 1000,
            "alarm_seconds": 10,
        }
    )
    child = subprocess.run(
        [sys.executable, "-I", "-S", str(sandbox.CHILD_SCRIPT)],
        input=payload,
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert json.loads(child.stdout) == {"ok": True, "result": {"b": 42}}
    assert child.stderr == b""


def test_endless_output_is_cut_and_the_child_killed(fake_child: Any) -> None:
    fake_child("""
        import sys
        sys.stdin.buffer.read()
        while True:
            sys.stdout.buffer.write(b"x" * 65536)
    """)
    assert failure("", "output_limit") == "Output is larger than 1000000 bytes"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
            "Code execution was killed by SIGSEGV",
        ),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            "Code execution was killed by SIGKILL (the system may have run out of memory)",
        ),
        (
            "import sys\nsys.stderr.write('first\\nboom\\n')\nsys.exit(3)",
            "Code execution ended without a result (exit status 3): boom",
        ),
        ("print('not json')", "The code sandbox answered something that is not a result"),
        ('print(\'{"ok": true, "result": [1]}\')', "The code sandbox answered something"),
        ('print(\'{"ok": false, "kind": "nonsense"}\')', "The code sandbox answered something"),
    ],
)
def test_a_broken_child_is_a_crash(fake_child: Any, source: str, message: str) -> None:
    fake_child("import sys\nsys.stdin.buffer.read()\n" + source)
    assert failure("", "crashed").startswith(message)


def test_a_child_killed_by_its_cpu_signal(fake_child: Any) -> None:
    fake_child(
        "import os, signal, sys\nsys.stdin.buffer.read()\nos.kill(os.getpid(), signal.SIGXCPU)"
    )
    assert failure("", "cpu_limit") == "Code execution hit the CPU time limit of 5 s"


def test_what_the_code_forked_is_killed_with_it(fake_child: Any) -> None:
    fake_child("""
        import json, os, sys, time
        sys.stdin.buffer.read()
        pid = os.fork()
        if pid == 0:
            os.close(1)
            os.close(2)
            time.sleep(60)
            os._exit(0)
        sys.stdout.write(json.dumps({"ok": True, "result": {"grandchild": pid}}))
    """)
    grandchild = run("")["grandchild"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break  # dead; its reaper (pid 1 here) may not be quick
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the grandchild survived")


def test_the_child_imports_nothing_of_the_server() -> None:
    """Started by path with -I -S, the child loads only modules built into the interpreter."""
    tree = ast.parse(sandbox.CHILD_SCRIPT.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    # json and traceback only on fallback and crash paths; collections.abc and types for mypy
    assert imported <= {
        "_signal",
        "builtins",
        "marshal",
        "resource",
        "sys",
        "_json",
        "json",
        "posix",
        "traceback",
        "collections.abc",
        "types",
    }
    probe = (
        "import sys\n"
        f"path = {str(sandbox.CHILD_SCRIPT)!r}\n"
        "before = set(sys.modules)\n"
        "exec(compile(open(path).read(), path, 'exec'), {'__name__': 'probe'})\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(loaded) <= {"_json", "_signal", "resource", "marshal"}


def test_the_childs_encoder_writes_what_json_dumps_writes() -> None:
    child = load_child_module()
    value = {"a": [1, 2.5, -0.0, 1e300, True, None, 'é"\\\n\u2028'], "b": {"c": {}}, "3": []}
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert "".join(child.encode_chunks(value)) == expected
    with pytest.raises(ValueError):
        child.encode_chunks({"x": math.inf})
    with pytest.raises(TypeError):
        child.encode_chunks({"x": {1, 2}})


# --- declared outputs --------------------------------------------------------------------------


def invalid(result: dict[str, Any], declared: dict[str, Any] | None) -> str:
    with pytest.raises(CodeFailed) as caught:
        check_outputs(result, declared)
    assert caught.value.kind == "invalid_output"
    return caught.value.message


def out(kind: str, children: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "children": children}


def test_declared_outputs_are_kept_and_undeclared_ones_dropped() -> None:
    declared = {"text": out("string"), "n": out("number"), "ok": out("boolean")}
    result = {"text": "hi", "n": 1.5, "ok": True, "extra": "dropped"}
    assert check_outputs(result, declared) == {"text": "hi", "n": 1.5, "ok": True}


def test_a_missing_output() -> None:
    assert invalid({"a": 1}, {"a": out("number"), "b": out("string")}) == "Output b is missing."


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("string", 3, "Output x must be a string, got number."),
        ("number", "3", "Output x must be a number, got string."),
        ("number", True, "Output x must be a number, got boolean."),
        ("boolean", 1, "Output x must be a boolean, got number."),
        ("object", [1], "Output x must be an object, got array."),
        ("array[string]", "abc", "Output x must be an array, got string."),
        ("array[string]", ["a", 1], "Output x[1] must be a string, got number."),
        ("array[number]", [1, False], "Output x[1] must be a number, got boolean."),
        ("array[number]", [1, None], "Output x[1] must be a number, got null."),
        ("array[boolean]", [True, "no"], "Output x[1] must be a boolean, got string."),
        ("array[object]", [{}, 2], "Output x[1] must be an object, got number."),
    ],
)
def test_a_value_of_the_wrong_type(kind: str, value: Any, message: str) -> None:
    assert invalid({"x": value}, {"x": out(kind)}) == message


def test_null_is_accepted_for_every_type() -> None:
    kinds = ["string", "number", "boolean", "object", "array[string]", "array[object]"]
    declared = {kind: out(kind) for kind in kinds}
    assert check_outputs(dict.fromkeys(kinds), declared) == dict.fromkeys(kinds)
    assert check_outputs({"x": ["a", None]}, {"x": out("array[string]")}) == {"x": ["a", None]}


def test_strings_lose_nul_characters_and_have_a_length_limit() -> None:
    assert check_outputs({"x": "a\x00b"}, {"x": out("string")}) == {"x": "ab"}
    assert check_outputs({"x": ["a\x00"]}, {"x": out("array[string]")}) == {"x": ["a"]}
    assert check_outputs({"x": "a" * MAX_STRING_LENGTH}, {"x": out("string")})
    message = invalid({"x": "a" * (MAX_STRING_LENGTH + 1)}, {"x": out("string")})
    assert message == "Output x is 400001 characters long, more than the limit of 400000."


def test_numbers_have_a_range_and_a_precision() -> None:
    assert check_outputs({"x": 2**63 - 1}, {"x": out("number")}) == {"x": 2**63 - 1}
    assert check_outputs({"x": 1.25e-5}, {"x": out("number")}) == {"x": 1.25e-5}
    assert invalid({"x": 2**63}, {"x": out("number")}).startswith("Output x is out of range")
    assert invalid({"x": -1e300}, {"x": out("number")}).startswith("Output x is out of range")
    message = invalid({"x": 1e-25}, {"x": out("number")})
    assert message == "Output x has more than 20 decimal places."
    assert invalid({"x": math.nan}, {"x": out("number")}).startswith("Output x must be a finite")


def test_arrays_have_a_length_limit() -> None:
    assert check_outputs({"x": [1] * MAX_ARRAY_LENGTH}, {"x": out("array[number]")})
    message = invalid({"x": ["a"] * (MAX_ARRAY_LENGTH + 1)}, {"x": out("array[string]")})
    assert message == "Output x has 30001 items, more than the limit of 30000."


def test_object_children_are_checked_with_their_paths() -> None:
    declared = {"user": out("object", {"name": out("string"), "tags": out("array[string]")})}
    result = {"user": {"name": "Ann", "tags": ["a"], "password": "dropped"}}
    assert check_outputs(result, declared) == {"user": {"name": "Ann", "tags": ["a"]}}
    assert invalid({"user": {"tags": []}}, declared) == "Output user.name is missing."
    message = invalid({"user": {"name": "Ann", "tags": [1]}}, declared)
    assert message == "Output user.tags[0] must be a string, got number."


def test_arrays_of_objects_check_each_item_against_the_children() -> None:
    declared = {"rows": out("array[object]", {"id": out("number")})}
    result = {"rows": [{"id": 1, "x": 0}, None, {"id": 2}]}
    assert check_outputs(result, declared) == {"rows": [{"id": 1}, None, {"id": 2}]}
    message = invalid({"rows": [{"id": 1}, {"id": "2"}]}, declared)
    assert message == "Output rows[1].id must be a number, got string."


def test_objects_without_children_are_checked_as_json() -> None:
    declared = {"data": out("object")}
    value = {"a": [1, 2], "b": {"c": "x\x00"}, "d": None, "e": [{"f": True}, None]}
    assert check_outputs({"data": value}, declared) == {
        "data": {"a": [1, 2], "b": {"c": "x"}, "d": None, "e": [{"f": True}, None]}
    }
    message = invalid({"data": {"a": [1, "2"]}}, declared)
    assert (
        message
        == "Output data.a mixes number and string items; the items of an array must share one type."
    )
    message = invalid({"data": {"a": [1, True]}}, declared)
    assert message.startswith("Output data.a mixes boolean and number items")
    assert invalid({"data": {"a": 2**70}}, declared).startswith("Output data.a is out of range")


def test_objects_nest_five_levels_at_most() -> None:
    # the result is level 1: a, b, c, d are levels 2 to 5
    assert check_outputs({"a": {"b": {"c": {"d": {"x": 1}}}}}, {"a": out("object")})
    message = invalid({"a": {"b": {"c": {"d": {"e": {}}}}}}, {"a": out("object")})
    assert message == "Output a.b.c.d.e is nested more than 5 levels deep."
    # arrays do not count as a level; the objects in them do
    message = invalid({"a": {"b": {"c": {"d": [{"e": [{}]}]}}}}, {"a": out("object")})
    assert message == "Output a.b.c.d[0].e[0] is nested more than 5 levels deep."
    declared = {"a": out("array[object]", {"b": out("object")})}
    assert check_outputs({"a": [{"b": {"c": {"d": {}}}}]}, declared)
    message = invalid({"a": [{"b": {"c": {"d": {"e": {}}}}}]}, declared)
    assert message == "Output a[0].b.c.d.e is nested more than 5 levels deep."


def test_an_unsupported_type() -> None:
    message = invalid({"x": 1}, {"x": out("file")})
    assert message == "Output x has an unsupported type 'file'."


def test_declarations_may_be_objects_with_attributes() -> None:
    declared = {
        "x": SimpleNamespace(
            type="array[object]", children={"y": SimpleNamespace(type="string", children=None)}
        )
    }
    assert check_outputs({"x": [{"y": "a", "z": 1}]}, declared) == {"x": [{"y": "a"}]}


def test_without_a_declaration_every_key_is_kept_and_checked() -> None:
    assert check_outputs({"a": 1, "b": ["x"]}, None) == {"a": 1, "b": ["x"]}
    assert invalid({"a": [1, "x"]}, None).startswith("Output a mixes number and string items")
