"""The app debugger in Chromium: a message streams in (the answer grows before it ends), Stop
leaves the partial answer marked stopped, a reload mid-answer resumes the same answer to exactly
the text an uninterrupted run gives, usage/latency/request id under each answer, an upstream
refusal shown in words; a completion app's input form runs."""

from __future__ import annotations

import time
from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, resumptions, shot, sign_in
from tests.e2e.conftest import Admin, service_app
from tests.fakes.cuttable_proxy import cuttable_proxy

LATEST = '[data-testid="answer"][data-latest="true"]'


def words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def latest_text(page: Any) -> str:
    return str(page.locator(f'{LATEST} [data-testid="answer-text"]').inner_text())


def status(page: Any) -> str | None:
    found = page.locator(LATEST)
    return found.get_attribute("data-status") if found.count() else None


def send(page: Any, text: str) -> None:
    page.get_by_role("textbox", name="Message", exact=True).fill(text)
    page.get_by_role("button", name="Send").click()


def wait_for_words(page: Any, count: int) -> str:
    """Waits until the latest answer shows at least `count` words; returns its text."""
    page.wait_for_function(
        """([selector, count]) => {
            const el = document.querySelector(selector + ' [data-testid="answer-text"]');
            return el && el.textContent.trim().split(/\\s+/).length >= count;
        }""",
        arg=[LATEST, count],
    )
    return latest_text(page)


def watch_until_ended(page: Any) -> list[str]:
    """The latest answer's text as seen while it streams, until it is no longer streaming."""
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while status(page) == "streaming" and time.monotonic() < deadline:
        text = latest_text(page)
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        page.wait_for_timeout(40)
    seen.append(latest_text(page))
    return seen


def test_chat_streams_stops_resumes_after_a_reload_and_shows_errors(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(service_stack, service_admin, pre_prompt="You are a test assistant.")
    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/debug")
    page.get_by_role("heading", name="Debug chat app").wait_for()
    page.get_by_text("No messages yet").wait_for()
    axe(page, context="empty debugger")

    # 1. The answer grows token by token, then ends with its usage, latency and request id.
    upstream.control(pace_ms=60)
    first = words("alpha", 24)
    send(page, first)
    seen = watch_until_ended(page)
    assert status(page) == "done"
    assert seen[-1] == f"You said: {first}"
    growing = [text for text in seen[:-1] if text != seen[-1]]
    assert len(growing) >= 3, seen  # observed several times before message_end
    assert all(seen[-1].startswith(text) for text in growing)
    meta = page.locator(f'{LATEST} [data-testid="answer-meta"]')
    assert "total" in meta.locator('[data-testid="usage"]').inner_text()
    assert meta.locator('[data-testid="first-token"]').inner_text().strip()
    assert meta.locator('[data-testid="total-time"]').inner_text().strip()
    assert len(meta.locator('[data-testid="request-id"]').inner_text().strip()) >= 8
    conversation = page.get_by_test_id("conversation-id").inner_text()

    # 2. Stop mid-answer: it ends, marked stopped, with the part that came.
    upstream.control(pace_ms=150)
    second = words("beta", 40)
    send(page, second)
    wait_for_words(page, 4)
    page.get_by_role("button", name="Stop").click()
    page.locator(f'{LATEST}[data-status="stopped"]').wait_for()
    partial = latest_text(page)
    assert 0 < len(partial) < len(f"You said: {second}")
    assert f"You said: {second}".startswith(partial)
    assert page.locator(f'{LATEST} [data-testid="stopped"]').is_visible()

    # 3. A reload mid-answer: the same answer resumes, each piece once, in the same conversation.
    third = words("gamma", 30)
    send(page, third)
    wait_for_words(page, 5)
    page.reload()
    page.locator(f'{LATEST}[data-status="done"]').wait_for()
    assert latest_text(page) == f"You said: {third}"
    assert page.get_by_test_id("conversation-id").inner_text() == conversation
    assert page.locator('[data-testid="answer"]').count() == 3  # the earlier turns are kept
    upstream.control(pace_ms=5)
    shot(page, "debugger")
    axe(page, context="debugger after three turns")

    # 4. The upstream refuses: the envelope's message, in words, under the turn.
    # Several: a background naming call of the conversation may take one first.
    upstream.control(mode="quota", times=4)
    send(page, "one more")
    page.locator(f'{LATEST}[data-status="error"]').wait_for()
    alert = page.locator(f"{LATEST} [role=alert]")
    assert alert.inner_text().strip()
    assert "quota" in alert.inner_text().lower() or "429" in alert.inner_text()

    # 5. A new conversation starts empty.
    page.get_by_role("button", name="New conversation").click()
    page.get_by_text("No messages yet").wait_for()


def test_a_dropped_connection_resumes_the_same_answer(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    """The page reaches the server through a proxy that drops every connection mid-answer
    (twice): the page reconnects from the last event it got (`Last-Event-ID`) and the answer
    ends whole, each piece once; what was in flight at each cut was the answer's stream."""
    upstream.reset()
    app = service_app(service_stack, service_admin, pre_prompt="You are a test assistant.")
    with cuttable_proxy("127.0.0.1", service_stack.port) as network:
        sign_in(page, network.base_url, service_admin)
        resumed = resumptions(page)
        page.goto(f"{network.base_url}/#/apps/{app.app_id}/debug")
        page.get_by_text("No messages yet").wait_for()
        upstream.control(pace_ms=120)
        question = words("delta", 30)
        send(page, question)
        wait_for_words(page, 5)
        assert network.cut() >= 1  # the stream, at least
        wait_for_words(page, 12)  # reconnected: the answer goes on
        assert network.cut() >= 1
        page.locator(f'{LATEST}[data-status="done"]').wait_for()
        upstream.control(pace_ms=5)
    assert latest_text(page) == f"You said: {question}"  # whole, no piece twice
    assert len(resumed) >= 2 and all(resumed), resumed  # each reconnection from an event id
    assert [int(r) for r in resumed if r] == sorted(int(r) for r in resumed if r)


def test_completion_app_runs_with_its_input_form(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(
        service_stack,
        service_admin,
        mode="completion",
        pre_prompt="Translate to French: {{text}}",
        user_input_form=[
            {"text-input": {"label": "Text", "variable": "text", "required": True}},
            {"select": {"label": "Tone", "variable": "tone", "options": ["plain", "formal"]}},
        ],
    )
    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/debug")
    run = page.get_by_role("button", name="Run")
    run.wait_for()
    assert run.is_disabled()  # the required input is empty
    page.get_by_label("Text (required)").fill("good morning")
    page.get_by_label("Tone").select_option("formal")
    run.click()
    page.locator(f'{LATEST}[data-status="done"]').wait_for()
    assert latest_text(page).startswith("You said:")
    assert "text: good morning" in page.get_by_test_id("query").inner_text()
    shot(page, "debugger-completion")
    axe(page, context="completion debugger")


def test_an_answer_is_read_aloud_in_the_debugger(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(
        service_stack, service_admin, text_to_speech={"enabled": True, "voice": "shimmer"}
    )
    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/debug")
    page.get_by_role("heading", name="Debug chat app").wait_for()
    send(page, "read me back")
    page.wait_for_function("s => document.querySelector(s)?.dataset.status === 'done'", arg=LATEST)
    with page.expect_response(lambda r: r.url.endswith("/text-to-audio")) as spoken:
        page.get_by_role("button", name="Read aloud").click()
    assert spoken.value.status == 200
    player = page.get_by_label("The answer read aloud")
    player.wait_for()
    held = page.evaluate("async (url) => (await fetch(url)).text()", player.get_attribute("src"))
    assert held == "ID3shimmer:You said: read me back"  # the fake's "MP3": voice and answer
    axe(page, context="debugger, answer read aloud")
    shot(page, "console-debugger-read-aloud")
