"""One workflow per node type (Dify DSL files in tests/e2e/workflows/nodes/), each published and
run over the Service API (`/v1/workflows/run`, `/v1/chat-messages` for the chatflow) against a
real server whose model is the fake upstream: the outputs and node statuses a Dify user would
see, the stream's events where they matter, and the limits (code sandbox, SSRF guard, max steps,
stop) ending nodes with a clear error instead of a 500.

The server runs with small limits (`STACK_ENV`) so the misbehaving cases end fast."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames
from tests.e2e.test_chatflow_runs import turn
from tests.e2e.test_knowledge_chat import PASSAGE, QUESTION, knowledge  # noqa: F401 (a fixture)
from tests.e2e.test_workflow_runs import published_app, run, stream
from tests.fakes.http_echo import HttpEcho, http_echo

NODES = Path(__file__).parent / "workflows" / "nodes"
MAX_STEPS = 120
STACK_ENV = {
    "CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the test's own HTTP receiver
    "CONDUIT_WORKFLOW_CODE_CPU_SECONDS": "1",
    "CONDUIT_WORKFLOW_CODE_WALL_SECONDS": "3",
    "CONDUIT_WORKFLOW_CODE_OUTPUT_BYTES": "4096",
    "CONDUIT_WORKFLOW_MAX_STEPS": str(MAX_STEPS),
}

Events = list[dict[str, Any]]
AppOf = Callable[..., ServiceApp]


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((NODES / f"{name}.yml").read_text())
    return document


@pytest.fixture(scope="module")
def app_of(service_stack: support.Stack, service_admin: Admin) -> Iterator[AppOf]:
    """The published app of a DSL file of workflows/nodes/, made once per module."""
    made: dict[str, ServiceApp] = {}

    def get(name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> ServiceApp:
        if name not in made:
            document = load(name)
            if edit is not None:
                edit(document)
            made[name] = published_app(service_stack, service_admin, document)
        return made[name]

    yield get
    for app in made.values():
        app.client.close()


@pytest.fixture
def model(upstream: Any) -> Iterator[Any]:
    """The fake upstream, its settings restored before and after the test."""
    upstream.reset()
    yield upstream
    upstream.reset()


def blocking(app: ServiceApp, inputs: dict[str, Any]) -> dict[str, Any]:
    response = run(app, inputs)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def of(events: Events, name: str, node_id: str | None = None) -> list[dict[str, Any]]:
    """The `data` of the events called `name` (of one node when given), in order."""
    return [
        e["data"]
        for e in events
        if e["event"] == name and (node_id is None or e["data"]["node_id"] == node_id)
    ]


def statuses(events: Events) -> dict[str, str]:
    """Each node's last `node_finished` status."""
    return {data["node_id"]: data["status"] for data in of(events, "node_finished")}


def started(events: Events) -> set[str]:
    return {data["node_id"] for data in of(events, "node_started")}


def prompts(upstream: Any) -> list[list[dict[str, Any]]]:
    """The messages of every request the fake model got, oldest first."""
    return [record["messages"] for record in upstream.stats()["log"]]


# --- start and end ------------------------------------------------------------------------------

FORM = {"name": "Ada", "size": "large"}


class TestStart:
    def test_every_input_type_reaches_the_end(self, app_of: AppOf) -> None:
        inputs = {
            **FORM,
            "bio": "Wrote the first program.",
            "count": "7",
            "agree": True,
            "meta": {"born": 1815, "tags": ["math"]},
        }
        data = blocking(app_of("start"), inputs)
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {
            "name": "Ada",
            "bio": "Wrote the first program.",
            "size": "large",
            "count": 7,  # a number given as a string is read as one
            "agree": True,
            "meta": {"born": 1815, "tags": ["math"]},
            "who": "wf-user",  # sys.user_id
            "nothing": None,  # an end output whose variable was never set
        }
        assert data["total_steps"] == 2

    @pytest.mark.parametrize(
        ("inputs", "message"),
        [
            ({"size": "large"}, "name is required in input form"),
            ({**FORM, "name": "A" * 11}, "name in input form must be less than 10 characters"),
            (
                {**FORM, "size": "medium"},
                "size in input form must be one of the following: ['small', 'large']",
            ),
            ({**FORM, "count": "seven"}, "count in input form must be a valid number"),
            ({**FORM, "bio": 42}, "bio in input form must be a string"),
        ],
        ids=["required", "max-length", "options", "number", "not-a-string"],
    )
    def test_a_form_error_is_a_400_naming_the_field(
        self, app_of: AppOf, inputs: dict[str, Any], message: str
    ) -> None:
        response = run(app_of("start"), inputs)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_param"
        assert message in response.json()["message"]

    def test_a_json_object_input_that_is_not_an_object_is_refused(self, app_of: AppOf) -> None:
        response = run(app_of("start"), {**FORM, "meta": "not an object"})
        assert response.status_code == 400, response.text
        assert response.json()["message"] == "meta in input form must be a dict"

    def test_a_checkbox_given_as_text_is_read_as_a_boolean(self, app_of: AppOf) -> None:
        data = blocking(app_of("start"), {**FORM, "agree": "yes"})
        assert data["outputs"]["agree"] is True


# --- template-transform ---------------------------------------------------------------------------


class TestTemplateTransform:
    def test_loops_and_filters_render(self, app_of: AppOf) -> None:
        inputs = {
            "name": "ada lovelace",
            "meta": {"fruits": ["pear", "fig", "apple"], "prices": [2, 3]},
        }
        data = blocking(app_of("template_transform"), inputs)
        assert data["status"] == "succeeded", data
        assert data["outputs"]["letter"] == (
            "Hello Ada Lovelace!\n"
            "1. PEAR, 2. FIG, 3. APPLE\n"
            "3 fruits, sorted: apple/fig/pear; total 5; no nickname"
        )

    @pytest.mark.parametrize(("probe", "node"), [("mro", "mro"), ("class", "klass")])
    def test_a_template_that_reaches_for_python_internals_fails_the_node(
        self, app_of: AppOf, probe: str, node: str
    ) -> None:
        events = stream(app_of("template_transform_unsafe"), {"probe": probe})
        (finished,) = of(events, "node_finished", node)
        assert finished["status"] == "failed"
        assert "The template did something it may not" in finished["error"]
        assert "__class__" in finished["error"] and "unsafe" in finished["error"]
        end = events[-1]
        assert end["event"] == "workflow_finished" and end["data"]["status"] == "failed"
        assert "unsafe" in end["data"]["error"] and end["data"]["outputs"] == {}


# --- variable-aggregator --------------------------------------------------------------------------


class TestVariableAggregator:
    @pytest.mark.parametrize(
        ("inputs", "outputs"),
        [
            (
                {"n": 5, "label": "five"},
                {"plain": "5 is positive", "message": "5 is positive", "label": "five"},
            ),
            ({"n": -2}, {"plain": "-2 is not positive", "message": "-2 is not positive"}),
        ],
        ids=["positive", "negative"],
    )
    def test_the_branch_that_ran_is_aggregated_plain_and_by_group(
        self, app_of: AppOf, inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> None:
        data = blocking(app_of("variable_aggregator"), inputs)
        assert data["status"] == "succeeded", data
        assert {k: data["outputs"][k] for k in outputs} == outputs

    def test_a_group_s_output_is_an_object_under_the_group_name(self, app_of: AppOf) -> None:
        events = stream(app_of("variable_aggregator"), {"n": 1, "label": "one"})
        (grouped,) = of(events, "node_finished", "grouped")
        assert grouped["outputs"] == {
            "message": {"output": "1 is positive"},
            "label": {"output": "one"},
        }
        assert "neg" not in started(events)


# --- if-else --------------------------------------------------------------------------------------


class TestIfElse:
    @pytest.mark.parametrize(
        ("s", "n", "case", "branch"),
        [
            ("a cat nap", 11, "cat-big", "big cat"),  # and: contains, >
            ("a cat nap", 10, "false", "something else"),  # one of two fails: not that case
            ("doghouse", 5, "dog-or-zero", "dog or zero"),  # or: start with
            ("fish", 0, "dog-or-zero", "dog or zero"),  # or: =
            ("bird", 3, "bird", "small bird"),  # not empty, end with, not contains, ≤, ≠
            ("bird", 2, "false", "something else"),  # ≠ fails
            ("boxbird", 1, "false", "something else"),  # not contains fails
        ],
    )
    def test_the_first_case_that_holds_picks_the_branch(
        self, app_of: AppOf, s: str, n: int, case: str, branch: str
    ) -> None:
        data = blocking(app_of("if_else"), {"s": s, "n": n})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {"branch": branch, "case": case}

    def test_only_the_chosen_branch_runs(self, app_of: AppOf) -> None:
        events = stream(app_of("if_else"), {"s": "doghouse", "n": 5})
        assert started(events) == {"start", "route", "b", "join", "end"}
        (route,) = of(events, "node_finished", "route")
        assert route["outputs"] == {"result": True, "selected_case_id": "dog-or-zero"}
        assert set(statuses(events).values()) == {"succeeded"}

    def test_a_condition_that_cannot_be_evaluated_fails_the_node(self, app_of: AppOf) -> None:
        events = stream(app_of("if_else"), {"s": "zebra", "n": 99})
        (route,) = of(events, "node_finished", "route")
        assert route["status"] == "failed"
        assert "> needs a number, got the string 'zebra'" in route["error"]
        assert events[-1]["data"]["status"] == "failed"


# --- code -----------------------------------------------------------------------------------------

CODE = {"n": 4, "word": "red-green"}


class TestCode:
    def test_declared_outputs_are_checked_and_returned(self, app_of: AppOf) -> None:
        data = blocking(app_of("code"), {"mode": "ok", **CODE})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {
            "total": 8,
            "label": "RED-GREEN",
            "parts": ["red", "green"],
            "info": {"count": 2, "json": '["red", "green"]'},
        }

    def test_an_undeclared_output_is_dropped(self, app_of: AppOf) -> None:
        events = stream(app_of("code"), {"mode": "ok", **CODE})
        (code,) = of(events, "node_finished", "code")
        assert code["status"] == "succeeded"
        assert "undeclared" not in code["outputs"]
        assert code["inputs"] == {"mode": "ok", **CODE}

    @pytest.mark.parametrize(
        ("mode", "error"),
        [
            ("loop", r"Code execution hit the (CPU time limit of 1 s|time limit of 3 s)"),
            ("huge", r"Output is larger than 4096 bytes"),
            ("crash", r"RuntimeError: asked to crash on red-green"),
            ("socket", r"import of 'socket' is not allowed"),
            ("wrong-type", r"Output total must be a number, got string\."),
            ("missing", r"Output (label|parts|info) is missing\."),
        ],
    )
    def test_misbehaving_code_fails_its_node_with_a_clear_error(
        self, app_of: AppOf, mode: str, error: str
    ) -> None:
        events = stream(app_of("code"), {"mode": mode, **CODE})
        (code,) = of(events, "node_finished", "code")
        assert code["status"] == "failed"
        assert re.search(error, code["error"]), code["error"]
        assert "end" not in started(events)
        finished = events[-1]
        assert finished["event"] == "workflow_finished"
        assert finished["data"]["status"] == "failed"
        assert re.search(error, finished["data"]["error"])
        assert not of(events, "error")

    def test_a_failed_code_node_in_a_blocking_run_is_http_200_and_failed(
        self, app_of: AppOf
    ) -> None:
        response = run(app_of("code"), {"mode": "crash", **CODE})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["status"] == "failed" and data["outputs"] == {}
        assert data["error"].startswith(
            "Node Compute run failed: RuntimeError: asked to crash on red-green (line 11: "
        )


# --- http-request ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpEcho]:
    with http_echo() as server:
        yield server


def http_inputs(receiver: HttpEcho) -> dict[str, str]:
    return {"base": receiver.base_url, "token": uuid.uuid4().hex[:8], "name": "Zoë"}


class TestHttpRequest:
    def test_requests_carry_their_body_headers_params_and_auth(
        self, app_of: AppOf, receiver: HttpEcho
    ) -> None:
        inputs = http_inputs(receiver)
        token = inputs["token"]
        data = blocking(app_of("http_request"), inputs)
        outputs = data["outputs"]
        assert outputs["echo_status"] == 200
        echo = json.loads(outputs["echo_body"])
        assert echo["method"] == "POST" and echo["path"] == "/echo"
        assert echo["query"] == {"q": "Zoë", "page": "2"}
        assert echo["json"] == {"name": "Zoë", "tags": ["a", "b"], "n": 3}
        assert echo["headers"]["content-type"] == "application/json"
        assert echo["headers"]["authorization"] == f"Bearer key-{token}"
        assert echo["headers"]["x-trace"] == token
        form = json.loads(outputs["form_body"])
        assert form["method"] == "PUT" and form["form"] == {"who": "Zoë", "city": "Lyon"}
        assert form["headers"]["x-api-key"] == f"custom-{token}"
        assert "authorization" not in form["headers"]
        basic = json.loads(outputs["basic_body"])
        assert basic["method"] == "GET"
        assert basic["headers"]["authorization"] == "Basic YWxpY2U6d29uZGVybGFuZA=="
        assert (outputs["flaky_status"], json.loads(outputs["flaky_body"])) == (
            200,
            {"attempt": 2},
        )
        # Two nodes failed into their error strategy: the run partly succeeded.
        assert data["status"] == "partial-succeeded", data
        assert data["exceptions_count"] == 2
        paths = [r.path for r in receiver.received if token in r.path]
        assert paths == [f"/flaky/{token}", f"/flaky/{token}"]

    def test_a_500_is_retried_and_each_failed_attempt_is_a_node_retry_event(
        self, app_of: AppOf, receiver: HttpEcho
    ) -> None:
        events = stream(app_of("http_request"), http_inputs(receiver))
        (retry,) = of(events, "node_retry", "flaky")
        assert retry["status"] == "retry" and retry["retry_index"] == 1
        assert retry["error"] == "Request failed with status code 500"
        assert retry["node_type"] == "http-request" and retry["title"] == "Flaky"
        (flaky,) = of(events, "node_finished", "flaky")
        assert flaky["status"] == "succeeded" and flaky["outputs"]["status_code"] == 200
        names = [e["event"] for e in events if e.get("data", {}).get("node_id") == "flaky"]
        assert names == ["node_started", "node_retry", "node_finished"]

    def test_fail_branch_and_default_value_take_over_an_error_response(
        self, app_of: AppOf, receiver: HttpEcho
    ) -> None:
        events = stream(app_of("http_request"), http_inputs(receiver))
        done = statuses(events)
        assert done["broken"] == "exception" and done["fallback"] == "exception"
        assert "broken_ok" not in started(events)
        assert done["broken_failed"] == "succeeded"
        (broken,) = of(events, "node_finished", "broken")
        assert broken["error"] == "Request failed with status code 503"
        assert broken["outputs"] == {
            "error_message": "Request failed with status code 503",
            "error_type": "HTTPResponseCodeError",
        }
        finished = events[-1]["data"]
        assert finished["status"] == "partial-succeeded"
        assert finished["exceptions_count"] == 2
        outputs = finished["outputs"]
        assert outputs["broken"] == (
            "failed: Request failed with status code 503 (HTTPResponseCodeError)"
        )
        assert outputs["fallback_status"] == 0
        assert outputs["fallback_body"] == "the default body"
        assert outputs["fallback_error"] == "HTTPResponseCodeError"

    def test_a_private_address_outside_the_allow_list_is_refused_naming_the_rule(
        self, app_of: AppOf
    ) -> None:
        events = stream(app_of("http_request_private"), {})
        (probe,) = of(events, "node_finished", "probe")
        assert probe["status"] == "failed"
        assert probe["error"] == (
            "url: the host 10.255.255.1 resolves to a private address 10.255.255.1"
        )
        assert probe["elapsed_time"] < 1  # refused before any connection was tried
        assert events[-1]["data"]["status"] == "failed"


# --- iteration ------------------------------------------------------------------------------------


class TestIteration:
    def test_each_mode_maps_the_items(self, app_of: AppOf) -> None:
        data = blocking(app_of("iteration"), {"words": "ox,elk,yak"})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {
            "shouted": ["0=OX", "1=ELK", "2=YAK"],
            "pairs": [["ox", "OX"], ["elk", "ELK"], ["yak", "YAK"]],  # flatten_output: false
            "kept": ["ox", "OX", "elk", "ELK", "yak", "YAK"],  # flatten_output: true
            "strict": ["ox", "OX", "elk", "ELK", "yak", "YAK"],
        }

    def test_the_stream_reports_each_iteration_and_its_items_as_dify_does(
        self, app_of: AppOf
    ) -> None:
        events = stream(app_of("iteration"), {"words": "ox,elk,yak"})
        (begun,) = of(events, "iteration_started", "seq")
        assert {
            "id",
            "node_id",
            "node_type",
            "title",
            "created_at",
            "extras",
            "metadata",
            "inputs",
        } <= set(begun)
        assert begun["node_type"] == "iteration" and begun["title"] == "Shout each"
        assert begun["inputs"] == {"iterator_selector": ["ox", "elk", "yak"]}
        nexts = of(events, "iteration_next", "seq")
        assert [n["index"] for n in nexts] == [0, 1, 2]
        assert all(n["id"] == begun["id"] for n in nexts)
        (ended,) = of(events, "iteration_completed", "seq")
        assert ended["id"] == begun["id"] and ended["status"] == "succeeded"
        assert ended["outputs"] == {"output": ["0=OX", "1=ELK", "2=YAK"]}
        assert ended["steps"] == 3 and ended["error"] is None
        assert {
            "elapsed_time",
            "total_tokens",
            "execution_metadata",
            "finished_at",
            "inputs",
        } <= set(ended)
        # The children's events carry their iteration and the item's index.
        shouts = of(events, "node_finished", "shout")
        assert [s["iteration_id"] for s in shouts] == ["seq"] * 3
        assert [s["execution_metadata"]["iteration_index"] for s in shouts] == [0, 1, 2]
        assert all(s["iteration_id"] == "seq" for s in of(events, "node_started", "shout"))
        # A parallel iteration runs `parallel_nums` items at once: two pairs started before
        # either finished.
        positions = [
            (e["event"], e["data"]["node_id"])
            for e in events
            if e["event"] in ("node_started", "node_finished")
        ]
        first_done = positions.index(("node_finished", "pair_p"))
        assert positions[:first_done].count(("node_started", "pair_p")) == 2
        assert [n["index"] for n in of(events, "iteration_next", "par")] == [0, 1, 2]

    def test_a_failed_item_is_null_left_out_or_the_end_of_the_run_by_error_mode(
        self, app_of: AppOf
    ) -> None:
        events = stream(app_of("iteration"), {"words": "ox,bad,yak"})
        (par,) = of(events, "iteration_completed", "par")
        assert par["status"] == "succeeded"
        assert par["outputs"] == {"output": [["ox", "OX"], None, ["yak", "YAK"]]}
        (kept,) = of(events, "iteration_completed", "rm")
        assert kept["outputs"] == {"output": ["ox", "OX", "yak", "YAK"]}
        failed = [p for p in of(events, "node_finished", "pair_p") if p["status"] == "failed"]
        assert [p["execution_metadata"]["iteration_index"] for p in failed] == [1]
        assert "ValueError: refusing the word bad" in failed[0]["error"]
        (strict,) = of(events, "iteration_completed", "strict")
        assert strict["status"] == "failed"
        assert "refusing the word bad" in strict["error"]
        # The strict iteration stopped at its failed item.
        assert [n["index"] for n in of(events, "iteration_next", "strict")] == [0, 1]
        finished = events[-1]["data"]
        assert finished["status"] == "failed" and "refusing the word bad" in finished["error"]


# --- loop -----------------------------------------------------------------------------------------


class TestLoop:
    @pytest.mark.parametrize(
        ("limit", "outputs"),
        [
            (3, {"num": 3, "trail": "1;2;3;", "k": 4}),
            (0, {"num": 0, "trail": "", "k": 4}),  # the break condition holds at once
        ],
    )
    def test_loop_variables_change_each_round_until_the_loop_breaks(
        self, app_of: AppOf, limit: int, outputs: dict[str, Any]
    ) -> None:
        data = blocking(app_of("loop"), {"limit": limit})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == outputs

    def test_the_stream_reports_each_round_as_dify_does(self, app_of: AppOf) -> None:
        events = stream(app_of("loop"), {"limit": 2})
        (begun,) = of(events, "loop_started", "count")
        assert begun["node_type"] == "loop" and begun["title"] == "Count"
        assert {k: begun["inputs"][k] for k in ("num", "trail")} == {"num": 0, "trail": ""}
        rounds = of(events, "loop_next", "count")
        assert [r["index"] for r in rounds] == [0, 1]
        assert [r["pre_loop_output"] for r in rounds] == [
            {"num": 0, "trail": ""},
            {"num": 1, "trail": "1;"},
        ]
        (ended,) = of(events, "loop_completed", "count")
        assert ended["status"] == "succeeded" and ended["error"] is None
        assert {k: ended["outputs"][k] for k in ("num", "trail")} == {"num": 2, "trail": "1;2;"}
        notes = of(events, "node_finished", "note")
        assert [n["loop_id"] for n in notes] == ["count", "count"]
        assert [n["execution_metadata"]["loop_index"] for n in notes] == [0, 1]
        assert [n["outputs"]["output"] for n in notes] == ["1;", "1;2;"]
        # hunt: the loop-end node ended it after the second round.
        (hunt,) = of(events, "loop_completed", "hunt")
        assert hunt["outputs"]["k"] == 4
        assert [n["index"] for n in of(events, "loop_next", "hunt")] == [0, 1]
        assert len(of(events, "node_finished", "stop")) == 1

    def test_a_loop_longer_than_the_step_limit_fails_the_run(self, app_of: AppOf) -> None:
        events = stream(app_of("loop_long"), {})
        finished = events[-1]
        assert finished["event"] == "workflow_finished"
        assert finished["data"]["status"] == "failed"
        assert finished["data"]["error"] == f"The workflow ran more than {MAX_STEPS} steps."
        (spin,) = of(events, "loop_completed", "spin")
        assert spin["status"] == "failed"
        assert spin["error"] == f"The workflow ran more than {MAX_STEPS} steps."
        assert len(of(events, "loop_next", "spin")) < MAX_STEPS


# --- list-operator --------------------------------------------------------------------------------

LISTS = {"numbers": [5, 1, 9, 3, 2], "words": ["pear", "fig", "banana", "kiwi", "apple"]}


class TestListOperator:
    def test_filter_order_limit_and_extract(self, app_of: AppOf) -> None:
        data = blocking(app_of("list_operator"), {"data": LISTS, "serial": "2"})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {
            "top": [9, 5],
            "top_first": 9,
            "top_last": 5,
            "picked": ["banana"],  # the 2nd of pear, banana, apple
            "sorted": ["apple", "banana", "fig"],
        }

    def test_a_serial_past_the_end_fails_the_node(self, app_of: AppOf) -> None:
        events = stream(app_of("list_operator"), {"data": LISTS, "serial": "9"})
        (picked,) = of(events, "node_finished", "picked")
        assert picked["status"] == "failed"
        assert picked["error"] == (
            "list operator: extract_by.serial 9 is past the end of a list of 3 item(s)"
        )
        assert events[-1]["data"]["status"] == "failed"


# --- llm ------------------------------------------------------------------------------------------


class TestLLM:
    def test_chat_completion_and_context_prompts_reach_the_model(
        self, app_of: AppOf, model: Any
    ) -> None:
        data = blocking(app_of("llm"), {"topic": "cats"})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {
            "chat": "You said: Tell me about cats",
            "completion": "You said: Complete the line: cats are",
            "grounded": "You said: How long do cats sleep?",
        }
        assert data["total_tokens"] > 0
        sent = {m[-1]["content"]: m for m in prompts(model)}
        assert sent["Tell me about cats"] == [
            {"role": "system", "content": "You answer in one line."},
            {"role": "user", "content": "Tell me about cats"},
        ]
        assert sent["Complete the line: cats are"] == [
            {"role": "user", "content": "Complete the line: cats are"}
        ]
        assert sent["How long do cats sleep?"][0] == {
            "role": "system",
            "content": "Use only this context:\nCats sleep sixteen hours a day.",
        }

    def test_the_end_streams_the_first_model_output_as_it_comes(
        self, app_of: AppOf, model: Any
    ) -> None:
        events = stream(app_of("llm"), {"topic": "owls"})
        chunks = of(events, "text_chunk")
        assert "".join(c["text"] for c in chunks).startswith("You said: Tell me about owls")
        assert len(chunks) > 3
        (chat,) = of(events, "node_finished", "chat")
        assert chat["process_data"]["model_mode"] == "chat"
        assert chat["outputs"]["usage"]["total_tokens"] > 0


# --- question-classifier and parameter-extractor --------------------------------------------------


class TestQuestionClassifier:
    def test_the_class_the_model_names_takes_its_branch(self, app_of: AppOf, model: Any) -> None:
        model.control(answer='{"category_id": "c2", "category_name": "Technical problem"}')
        events = stream(app_of("question_classifier"), {"question": "My screen is black."})
        finished = events[-1]["data"]
        assert finished["status"] == "succeeded", finished
        assert finished["outputs"] == {
            "route": "to the support team",
            "class_name": "Technical problem",
        }
        assert {"billing", "other"}.isdisjoint(started(events))
        (classify,) = of(events, "node_finished", "classify")
        assert classify["outputs"]["class_id"] == "c2"
        (messages,) = prompts(model)
        assert '"category_id":"c1","category_name":"Billing"' in messages[0]["content"]
        assert "Questions about invoices are Billing." in messages[0]["content"]
        assert messages[-1] == {"role": "user", "content": "My screen is black."}

    def test_a_class_named_in_plain_words_is_understood(self, app_of: AppOf, model: Any) -> None:
        model.control(answer="That one is about Billing, I think.")
        data = blocking(app_of("question_classifier"), {"question": "Where is my invoice?"})
        assert data["outputs"] == {"route": "to the billing team", "class_name": "Billing"}


class TestParameterExtractor:
    def test_parameters_are_extracted_and_typed(self, app_of: AppOf, model: Any) -> None:
        model.control(
            answer='Sure: {"city": "Paris", "days": "3", "unit": "celsius", "tags": ["umbrella"]}'
        )
        data = blocking(app_of("parameter_extractor"), {"request": "Three rainy days in Paris"})
        assert data["status"] == "succeeded", data
        assert data["outputs"] == {
            "city": "Paris",
            "days": 3,
            "unit": "celsius",
            "tags": ["umbrella"],
            "ok": 1,
            "reason": None,
        }
        (messages,) = prompts(model)
        assert (
            '"city"' in messages[0]["content"]
            and '"options":["celsius","fahrenheit"]' in (messages[0]["content"])
        )
        assert messages[-1]["content"] == "Three rainy days in Paris"

    def test_what_could_not_be_extracted_is_reported_not_raised(
        self, app_of: AppOf, model: Any
    ) -> None:
        model.control(answer='{"days": "many", "unit": "kelvin"}')
        data = blocking(app_of("parameter_extractor"), {"request": "Somewhere, sometime"})
        assert data["status"] == "succeeded", data
        outputs = data["outputs"]
        assert outputs["ok"] == 0
        assert (outputs["city"], outputs["days"], outputs["unit"], outputs["tags"]) == (
            None,
            None,
            None,
            [],
        )
        assert "city is required but was not found" in outputs["reason"]
        assert "days should be number" in outputs["reason"]
        assert "unit must be one of ['celsius', 'fahrenheit']" in outputs["reason"]


# --- knowledge-retrieval and document-extractor ---------------------------------------------------


class TestKnowledgeRetrieval:
    def test_the_passages_found_reach_the_llm_as_its_context(
        self, app_of: AppOf, model: Any, request: pytest.FixtureRequest
    ) -> None:
        dataset_id = request.getfixturevalue("knowledge")["dataset"]["id"]

        def use_dataset(document: dict[str, Any]) -> None:
            for node in document["workflow"]["graph"]["nodes"]:
                if node["data"]["type"] == "knowledge-retrieval":
                    node["data"]["dataset_ids"] = [dataset_id]

        data = blocking(app_of("knowledge_retrieval", use_dataset), {"question": QUESTION})
        assert data["status"] == "succeeded", data
        passages = data["outputs"]["passages"]
        assert passages[0]["content"] == PASSAGE
        assert passages[0]["title"] == "lighthouse.txt"
        assert passages[0]["metadata"]["dataset_id"] == dataset_id
        assert passages[0]["metadata"]["_source"] == "knowledge"
        assert 0 < passages[0]["metadata"]["score"] <= 1
        assert data["outputs"]["answer"] == f"You said: {QUESTION}"
        (messages,) = prompts(model)
        assert messages[0]["role"] == "system"
        assert messages[0]["content"].startswith(f"Answer from these notes only:\n{PASSAGE}")


class TestDocumentExtractor:
    def test_an_uploaded_file_s_text_is_extracted(self, app_of: AppOf) -> None:
        app = app_of("document_extractor")
        uploaded = app.client.post(
            "/files/upload",
            files={"file": ("notes.txt", b"The tide turns at six.\nBoats wait.", "text/plain")},
            data={"user": "wf-user"},
        )
        assert uploaded.status_code == 201, uploaded.text
        doc = {
            "type": "document",
            "transfer_method": "local_file",
            "upload_file_id": uploaded.json()["id"],
        }
        data = blocking(app, {"doc": doc})
        assert data["status"] == "succeeded", data
        assert data["outputs"]["text"] == "The tide turns at six.\nBoats wait."

    def test_a_file_given_by_url_is_refused_with_a_clear_message(self, app_of: AppOf) -> None:
        doc = {
            "type": "document",
            "transfer_method": "remote_url",
            "url": "http://127.0.0.1:9/notes.txt",
        }
        events = stream(app_of("document_extractor"), {"doc": doc})
        (extract,) = of(events, "node_finished", "extract")
        assert extract["status"] == "failed"
        assert extract["error"] == "Files given by URL are not fetched: upload the file first."
        assert events[-1]["data"]["status"] == "failed"


# --- tool (the built-in tools) ------------------------------------------------------------------


class TestTool:
    def test_built_in_tools_answer_from_variables_text_and_settings(self, app_of: AppOf) -> None:
        inputs = {"a": 12, "year": 2024, "month": 12, "day": 25, "zone": "Asia/Kolkata"}
        events = stream(app_of("tool"), inputs)
        end = events[-1]["data"]
        assert end["status"] == "succeeded", end
        assert end["outputs"] == {
            "squared": "145",
            "weekday": "December 25, 2024 is Wednesday.",
            "zone": "IST",  # the run's time zone (Asia/Kolkata), the node's format (%Z)
        }
        (summed,) = of(events, "node_finished", "sum")
        assert summed["inputs"] == {"expression": "12 ** 2 + 1"}
        assert summed["outputs"] == {"text": "145", "files": [], "json": []}
        assert summed["node_type"] == "tool"

    def test_a_tool_that_cannot_answer_fails_its_node_in_words(self, app_of: AppOf) -> None:
        inputs = {"a": 12, "year": 2023, "month": 2, "day": 29, "zone": "UTC"}
        events = stream(app_of("tool"), inputs)
        (day,) = of(events, "node_finished", "day")
        assert day["status"] == "failed"
        assert day["error"].startswith("Not a date: day is out of range for month")
        assert events[-1]["data"]["status"] == "failed"
        inputs = {"a": 1, "year": 2024, "month": 1, "day": 1, "zone": "Moon/Base"}
        (clock,) = of(stream(app_of("tool"), inputs), "node_finished", "clock")
        assert clock["status"] == "failed"
        assert clock["error"].startswith("timezone must be a time zone of the IANA database")

    @pytest.mark.parametrize(
        ("change", "says"),
        [
            ({"provider_id": "google"}, "node 'sum' (Square it).provider_id: no built-in tool"),
            ({"tool_name": "integrate"}, "node 'sum' (Square it).tool_name: maths has no tool"),
            ({"provider_type": "api"}, "no custom tool provider 'maths' in this workspace"),
            ({"provider_type": "mcp"}, "'mcp' tools are not served"),
            (
                {"tool_parameters": {"expression": {"type": "variable", "value": "a"}}},
                "tool_parameters.expression.value: must be a variable selector",
            ),
        ],
    )
    def test_a_tool_node_this_server_does_not_serve_is_refused_when_saved(
        self, service_admin: Admin, change: dict[str, Any], says: str
    ) -> None:
        document = load("tool")
        sum_node = next(n for n in document["workflow"]["graph"]["nodes"] if n["id"] == "sum")
        sum_node["data"].update(change)
        created = service_admin.client.post(
            "/console/api/apps", json={"name": "Tools", "mode": "workflow"}
        )
        app_id = created.json()["data"]["id"]
        synced = service_admin.client.post(
            f"/console/api/apps/{app_id}/workflows/draft",
            json={"graph": document["workflow"]["graph"], "features": {}},
        )
        support.assert_envelope(synced, 400, "invalid_param", says)


# --- a chatflow: answer and assigner --------------------------------------------------------------


def answer_of(events: Events) -> str:
    return "".join(e["answer"] for e in events if e["event"] == "message")


class TestChatflow:
    def test_the_assigner_changes_the_conversation_variables_the_answer_shows(
        self, app_of: AppOf
    ) -> None:
        events = turn(app_of("chatflow_assigner"), "owls")
        assert [e["event"] for e in events][-2:] == ["message_end", "workflow_finished"]
        assert events[-1]["data"]["status"] == "succeeded"
        (remember,) = of(events, "node_finished", "remember")
        assert remember["status"] == "succeeded"
        assert remember["process_data"]["updated_variables"] == {
            "conversation.turns": 1,
            "conversation.topics": ["owls"],
            "conversation.last": "owls",
            "conversation.draft": "",  # cleared
        }
        (hello,) = of(events, "node_finished", "hello")
        assert hello["outputs"]["answer"] == "You asked: owls\n"
        (reply,) = of(events, "node_finished", "reply")
        assert reply["outputs"]["answer"] == "Turn 1, last: owls"

    def test_conversation_variables_carry_over_to_the_next_turn(self, app_of: AppOf) -> None:
        app = app_of("chatflow_assigner")
        conversation_id = turn(app, "owls")[0]["conversation_id"]
        second = turn(app, "bats", conversation_id)
        (reply,) = of(second, "node_finished", "reply")
        assert reply["outputs"]["answer"] == "Turn 2, last: bats"
        listed = app.client.get(
            f"/conversations/{conversation_id}/variables", params={"user": "cf-user"}
        )
        assert listed.status_code == 200, listed.text
        values = {v["name"]: v["value"] for v in listed.json()["data"]}
        assert values == {"turns": 2, "topics": ["owls", "bats"], "last": "bats", "draft": ""}

    def test_the_streamed_answer_shows_the_variables_as_the_assigner_left_them(
        self, app_of: AppOf
    ) -> None:
        events = turn(app_of("chatflow_assigner"), "moths")
        assert answer_of(events) == "You asked: moths\nTurn 1, last: moths"


# --- stop and limits ------------------------------------------------------------------------------


class TestStop:
    def test_stopping_a_parallel_iteration_ends_the_run_and_its_items_within_a_second(
        self, app_of: AppOf, model: Any
    ) -> None:
        app = app_of("iteration_stop")
        model.control(mode="hang-before-first-token", times=4)
        events: Events = []
        asked = took = 0.0
        with app.client.stream(
            "POST",
            "/workflows/run",
            json={"inputs": {}, "user": "wf-user", "response_mode": "streaming"},
        ) as response:
            assert response.status_code == 200
            for frame in frames(response):
                if frame.event == "ping":
                    continue
                events.append(frame.data)
                if frame.data["event"] == "workflow_finished":
                    took = time.monotonic() - asked
                asking = len(of(events, "node_started", "ask")) == 4
                if asking and not asked:
                    asked = time.monotonic()
                    stop = app.client.post(
                        f"/workflows/tasks/{frame.data['task_id']}/stop", json={"user": "wf-user"}
                    )
                    assert stop.status_code == 200 and stop.json()["result"] == "success"
        assert asked, "the four items never all started"
        assert 0 < took < 1.0, took
        asks = of(events, "node_finished", "ask")
        assert [a["status"] for a in asks] == ["stopped"] * 4
        assert {a["execution_metadata"]["iteration_index"] for a in asks} == {0, 1, 2, 3}
        (each,) = of(events, "iteration_completed", "each")
        assert each["status"] == "stopped"
        assert events[-1]["event"] == "workflow_finished"
        assert events[-1]["data"]["status"] == "stopped"
        # The four model requests were closed, not left hanging.
        model.wait_for_stats(lambda stats: stats["disconnects"] == 4)
