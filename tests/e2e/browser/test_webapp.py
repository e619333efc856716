"""The end-user web app in Chromium (`/chat|completion|workflow/{code}`), on the web tier
(`/api`) of a real server whose model is the fake upstream: the site's texts, the opening
statement and suggested questions, a streamed answer, Stop, a reload mid-answer resuming the
same answer, like (stored), suggestions after an answer, the conversations (rename, pin,
delete), another browser being another end user, the mobile layout, a disabled site and a
bad code said in words, a completion app and a workflow app."""

from __future__ import annotations

import base64
from typing import Any

from tests import support
from tests.e2e.browser.conftest import TIMEOUT_MS, axe, resumptions, shot
from tests.e2e.conftest import Admin, ServiceApp, make_admin, service_app
from tests.e2e.test_workflow_runs import workflow_app
from tests.fakes.cuttable_proxy import cuttable_proxy

OPENING = "Hello! I answer questions about the test suite."
QUESTIONS = ["What can you do?", "Who made you?"]
# A long answer, one word per chunk: slow enough to stop it or reload in the middle.
SLOW_WORDS = [f"word{i}" for i in range(1, 41)]
SLOW_ANSWER = " ".join(SLOW_WORDS)
# A 1×1 PNG, attached to a message.
DOT_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
TRANSLATOR = {
    "pre_prompt": "Translate to French: {{text}}",
    "more_like_this": {"enabled": True},
    "user_input_form": [
        {"text-input": {"label": "Text", "variable": "text", "required": True}},
        {"select": {"label": "Tone", "variable": "tone", "options": ["plain", "formal"]}},
    ],
}


def site_code(admin: Admin, app_id: str, **fields: Any) -> str:
    """The app's site code, after setting its `fields` (title, description, copyright…)."""
    if fields:
        updated = admin.client.post(f"/console/api/apps/{app_id}/site", json=fields)
        assert updated.status_code == 200, updated.text
    site = admin.client.get(f"/console/api/apps/{app_id}/site")
    assert site.status_code == 200, site.text
    return str(site.json()["data"]["code"])


def chat_site(stack: support.Stack, admin: Admin) -> tuple[ServiceApp, str]:
    app = service_app(
        stack,
        admin,
        mode="chat",
        pre_prompt="You are a test assistant.",
        opening_statement=OPENING,
        suggested_questions=QUESTIONS,
        suggested_questions_after_answer={"enabled": True},
        file_upload={
            "image": {"enabled": True, "number_limits": 2, "transfer_methods": ["local_file"]}
        },
    )
    code = site_code(
        admin,
        app.app_id,
        title="Test Helper",
        description="Ask anything about the tests.",
        copyright="Conduit tests",
    )
    return app, code


def answers(page: Any) -> Any:
    return page.locator(".turn .answer-text")


def wait_idle(page: Any, turns: int) -> None:
    """`turns` answers are shown and none is streaming any more."""
    page.wait_for_function(
        """n => {
            const shown = document.querySelectorAll('.turn .bubble.assistant');
            return shown.length === n && [...shown].every(b => b.getAttribute('aria-busy') === 'false');
        }""",
        arg=turns,
    )


def test_chat_page(
    browser: Any, page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app, code = chat_site(service_stack, service_admin)
    url = f"{service_stack.base_url}/chat/{code}"
    page.goto(url)

    # The site's texts, the opening statement and the suggested questions.
    page.get_by_role("heading", name="Test Helper", level=1).wait_for()
    assert page.get_by_text("Ask anything about the tests.").is_visible()
    assert page.get_by_text("© Conduit tests").is_visible()
    assert page.get_by_text(OPENING).is_visible()
    group = page.get_by_role("group", name="Suggested questions")
    assert [b.inner_text() for b in group.get_by_role("button").all()] == QUESTIONS
    axe(page, context="chat page, new conversation")
    shot(page, "webapp-chat-start")

    # A suggested question sends itself; the answer streams in; the conversation is listed.
    group.get_by_role("button", name=QUESTIONS[0]).click()
    wait_idle(page, 1)
    assert answers(page).first.inner_text().startswith(f"You said: {QUESTIONS[0]}")
    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.locator(".conversation-open").first.wait_for()
    assert sidebar.locator(".conversation-open").count() == 1

    # Suggested questions after the answer (the app enables them).
    page.get_by_role("group", name="You could ask next").get_by_role("button").first.wait_for()

    # Like the answer: pressed, and stored as the end user's feedback.
    like = page.get_by_role("button", name="Like", exact=True).first
    like.click()
    page.locator('.answer-actions button[aria-pressed="true"]').wait_for()
    assert like.get_attribute("aria-pressed") == "true"
    feedbacks = app.client.get("/app/feedbacks").json()["data"]
    assert [(f["rating"], f["from_source"]) for f in feedbacks] == [("like", "user")]
    assert feedbacks[0]["from_end_user_id"]
    axe(page, context="chat page, answered")
    shot(page, "webapp-chat-answered")

    # Stop an answer in the middle: the text so far stays, Send comes back.
    upstream.control(answer=SLOW_ANSWER, pace_ms=120)
    page.get_by_label("Message").fill("Say many words")
    page.get_by_role("button", name="Send").click()
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('.turn .answer-text')[1]?.textContent.includes('word3')"
    )
    shot(page, "webapp-chat-streaming")
    stop.click()
    wait_idle(page, 2)
    stopped = answers(page).nth(1).inner_text()
    assert "word1" in stopped and "word40" not in stopped

    # Reload in the middle of an answer: the same answer resumes, with no word twice.
    page.get_by_label("Message").fill("Say them again")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.turn .answer-text')[2]?.textContent.includes('word5')"
    )
    page.reload()
    page.get_by_role("button", name="Stop").wait_for()
    shot(page, "webapp-chat-resumed")
    wait_idle(page, 3)
    resumed = page.locator(".turn").filter(has_text="Say them again").locator(".answer-text")
    assert resumed.inner_text() == SLOW_ANSWER
    # The earlier turns of the conversation are shown again with it.
    assert page.locator(".turn").count() == 3
    upstream.control(answer=None, pace_ms=5)

    # Rename, pin, a second conversation, delete (with a confirmation).
    sidebar.get_by_role("button", name="Actions for").first.click()
    sidebar.get_by_role("button", name="Rename").click()
    dialog = page.get_by_role("dialog", name="Rename conversation")
    dialog.get_by_label("Name").fill("About the suite")
    dialog.get_by_role("button", name="Save").click()
    sidebar.get_by_role("button", name="About the suite", exact=True).wait_for()
    assert page.get_by_role("heading", name="About the suite").is_visible()

    sidebar.get_by_role("button", name="New conversation").click()
    page.get_by_text(OPENING).wait_for()
    page.get_by_label("Message").fill("A second topic")
    page.get_by_role("button", name="Send").click()
    wait_idle(page, 1)
    sidebar.locator(".conversation-open").nth(1).wait_for()
    sidebar.get_by_role("button", name="Actions for About the suite").click()
    sidebar.get_by_role("button", name="Pin", exact=True).click()
    sidebar.get_by_role("heading", name="Pinned").wait_for()
    pinned = sidebar.locator(".conversation-list").first.locator(".conversation-open")
    assert pinned.all_inner_texts() == ["About the suite"]
    assert sidebar.locator(".conversation-open").count() == 2
    axe(page, context="chat page, two conversations, a dialog closed")
    shot(page, "webapp-chat-conversations")

    others = sidebar.locator(".conversation-list").nth(1).locator(".conversation-open")
    second_name = others.first.inner_text()
    sidebar.get_by_role("button", name=f"Actions for {second_name}").click()
    sidebar.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete conversation")
    assert second_name in confirm.inner_text()
    axe(page, context="delete dialog")
    confirm.get_by_role("button", name="Delete").click()
    page.wait_for_function("() => document.querySelectorAll('.conversation-open').length === 1")
    assert sidebar.locator(".conversation-open").all_inner_texts() == ["About the suite"]

    # The pin survives a reload, and a reload keeps the end user (same conversations).
    page.reload()
    sidebar.get_by_role("heading", name="Pinned").wait_for()
    assert sidebar.locator(".conversation-open").all_inner_texts() == ["About the suite"]

    # Another browser is another end user: none of these conversations, on a phone's screen.
    phone = browser.new_context(viewport={"width": 375, "height": 740})
    phone.set_default_timeout(TIMEOUT_MS)
    try:
        other = phone.new_page()
        other.goto(url)
        other.get_by_role("heading", name="Test Helper", level=1).wait_for()
        other.get_by_text("No conversations yet.").wait_for(state="attached")
        toggle = other.get_by_role("button", name="Conversations")
        assert toggle.get_attribute("aria-expanded") == "false"
        assert not other.get_by_role("navigation", name="Conversations").is_visible()
        # An image attached: uploaded at once, then sent as Dify's `files` with the message.
        with other.expect_response("**/api/files/upload") as uploaded:
            other.locator('input[type="file"]').set_input_files(
                {"name": "dot.png", "mimeType": "image/png", "buffer": DOT_PNG}
            )
        file_id = uploaded.value.json()["id"]
        other.get_by_role("button", name="Remove dot.png").wait_for()
        other.get_by_label("Message").fill("Hi from a phone")
        with other.expect_request("**/api/chat-messages") as sent:
            other.get_by_role("button", name="Send").click()
        assert sent.value.post_data_json["files"] == [
            {"type": "image", "transfer_method": "local_file", "upload_file_id": file_id}
        ]
        wait_idle(other, 1)
        assert "You said: Hi from a phone" in answers(other).first.inner_text()
        assert "Attached: dot.png" in other.locator(".turn .bubble.user").inner_text()
        assert other.get_by_role("button", name="Remove dot.png").count() == 0
        width = other.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways on a phone ({width}px)"
        axe(other, context="chat page on a phone")
        shot(other, "webapp-chat-mobile")
        toggle.click()
        nav = other.get_by_role("navigation", name="Conversations")
        nav.wait_for()
        assert nav.locator(".conversation-open").count() == 1  # its own, not the first user's
        shot(other, "webapp-chat-mobile-conversations")
    finally:
        phone.close()


def test_a_dropped_connection_costs_a_pause_not_the_answer(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    """The end user reaches the server through a proxy that drops every connection while the
    answer streams (twice): the page asks for the run's events after the last one it showed
    (`Last-Event-ID`) and the answer ends whole, each word once, with no error shown."""
    upstream.reset()
    app, code = chat_site(service_stack, service_admin)
    app.client.close()
    with cuttable_proxy("127.0.0.1", service_stack.port) as network:
        resumed = resumptions(page)
        page.goto(f"{network.base_url}/chat/{code}")
        page.get_by_role("heading", name="Test Helper", level=1).wait_for()
        upstream.control(answer=SLOW_ANSWER, pace_ms=120)
        page.get_by_label("Message").fill("tell me slowly")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.turn .answer-text')].some("
            "(e) => e.textContent.includes('word3'))"
        )
        assert network.cut() >= 1
        page.wait_for_function(
            "() => [...document.querySelectorAll('.turn .answer-text')].some("
            "(e) => e.textContent.includes('word8'))"
        )
        assert network.cut() >= 1
        wait_idle(page, 1)
        upstream.control(answer=None, pace_ms=5)
    assert answers(page).last.inner_text() == SLOW_ANSWER
    assert page.get_by_role("alert").count() == 0
    assert len(resumed) >= 2 and all(resumed), resumed


def test_an_answer_is_read_aloud_and_a_recording_becomes_the_message(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(
        service_stack,
        service_admin,
        mode="chat",
        text_to_speech={"enabled": True, "voice": "nova"},
        speech_to_text={"enabled": True},
    )
    page.goto(f"{service_stack.base_url}/chat/{site_code(service_admin, app.app_id)}")
    page.get_by_label("Message").fill("Read this back")
    page.get_by_role("button", name="Send").click()
    wait_idle(page, 1)
    with page.expect_response(lambda r: r.url.endswith("/api/text-to-audio")) as spoken:
        page.get_by_role("button", name="Read aloud").click()
    assert spoken.value.status == 200
    player = page.get_by_label("The answer read aloud")
    player.wait_for()
    # The player holds the server's audio (the fake's "MP3": its voice and the answer).
    held = page.evaluate("async (url) => (await fetch(url)).text()", player.get_attribute("src"))
    assert held == "ID3nova:You said: Read this back"
    axe(page, context="chat page, answer read aloud")
    shot(page, "webapp-chat-read-aloud")
    # Speech to text: the (fake) microphone recorded, its transcript put in the message box (the
    # fake model's transcript of a recording is its bytes as text: a WebM file's start).
    page.get_by_role("button", name="Record").click()
    stop = page.get_by_role("button", name="Stop recording")
    stop.wait_for()
    page.wait_for_timeout(600)
    with page.expect_response(lambda r: r.url.endswith("/api/audio-to-text")) as heard:
        stop.click()
    assert heard.value.status == 200
    page.wait_for_function("() => document.querySelector('#message').value.length > 0")
    assert upstream.stats()["log"][-1]["model"] == "whisper-1"
    page.get_by_role("button", name="Record").wait_for()
    # An app that does not speak shows no such button.
    quiet = service_app(service_stack, service_admin, mode="chat")
    page.goto(f"{service_stack.base_url}/chat/{site_code(service_admin, quiet.app_id)}")
    page.get_by_label("Message").fill("hello")
    page.get_by_role("button", name="Send").click()
    wait_idle(page, 1)
    assert page.get_by_role("button", name="Like", exact=True).is_visible()
    assert page.get_by_role("button", name="Read aloud").count() == 0


def test_a_disabled_site_and_a_bad_code_are_said_in_words(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    app, code = chat_site(service_stack, service_admin)
    url = f"{service_stack.base_url}/chat/{code}"
    page.goto(url)
    page.get_by_role("heading", name="Test Helper", level=1).wait_for()

    # Disabled while a visitor has a passport, then for a new visitor: the server's words.
    disabled = service_admin.client.put(
        f"/console/api/apps/{app.app_id}", json={"enable_site": False}
    )
    assert disabled.status_code == 200, disabled.text
    page.reload()
    page.get_by_role("heading", name="This app is not available").wait_for()
    assert "Site is disabled." in page.get_by_role("alert").inner_text()
    axe(page, context="disabled site")
    shot(page, "webapp-disabled")
    page.evaluate("() => localStorage.clear()")
    page.reload()
    page.get_by_role("alert").wait_for()
    assert "Site is disabled." in page.get_by_role("alert").inner_text()

    page.goto(f"{service_stack.base_url}/chat/no-such-code")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Site not found." in alert.inner_text()
    shot(page, "webapp-bad-code")


def test_completion_page(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(service_stack, service_admin, mode="completion", **TRANSLATOR)
    code = site_code(service_admin, app.app_id, title="Translator")
    page.goto(f"{service_stack.base_url}/completion/{code}")
    page.get_by_role("heading", name="Translator", level=1).wait_for()
    page.get_by_text("Nothing saved yet.").wait_for()
    axe(page, context="completion page")

    # A required input left empty: the server's refusal in words.
    page.get_by_role("button", name="Run").click()
    refusal = page.get_by_role("alert")
    refusal.wait_for()
    assert "text" in refusal.inner_text().lower()

    page.get_by_label("Text (required)").fill("good morning")
    page.get_by_label("Tone").select_option("formal")
    page.get_by_role("button", name="Run").click()
    result = page.locator(".result").first
    result.get_by_role("button", name="Save").wait_for()
    assert "Translate to French: good morning" in result.inner_text()

    result.get_by_role("button", name="Save").click()
    saved = page.locator(".saved-list li")
    saved.first.wait_for()
    assert "good morning" in saved.first.inner_text()

    result.get_by_role("button", name="More like this").click()
    page.locator(".result").nth(1).get_by_role("button", name="Save").wait_for()
    assert page.locator(".result").first.get_by_role("heading").inner_text() == "More like this"
    axe(page, context="completion page with results")
    shot(page, "webapp-completion")

    saved.first.get_by_role("button", name="Remove").click()
    page.get_by_text("Nothing saved yet.").wait_for()

    # Reload in the middle of a run: the same result resumes, with no word twice.
    upstream.control(answer=SLOW_ANSWER, pace_ms=120)
    page.get_by_role("button", name="Run").click()
    page.wait_for_function(
        "() => document.querySelector('.result .result-text')?.textContent.includes('word5')"
    )
    page.reload()
    page.get_by_role("button", name="Stop").wait_for()
    result = page.locator(".result").first
    result.get_by_role("button", name="Save").wait_for(timeout=30_000)
    assert result.locator(".result-text").inner_text() == SLOW_ANSWER
    assert page.locator(".result").count() == 1
    assert page.get_by_label("Text (required)").input_value() == "good morning"  # its inputs too
    shot(page, "webapp-completion-resumed")
    upstream.control(answer=None, pace_ms=5)


def test_workflow_page(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
    app.client.close()
    code = site_code(service_admin, app.app_id, title="Poems")
    page.goto(f"{service_stack.base_url}/workflow/{code}")
    page.get_by_role("heading", name="Poems", level=1).wait_for()
    page.get_by_label("Topic (required)").fill("the sea")
    page.get_by_role("button", name="Run").click()
    result = page.get_by_role("region", name="Result")
    result.locator(".status.succeeded").first.wait_for()
    text = result.inner_text()
    assert "all" in text and "poem" in text and "the sea" in text
    axe(page, context="workflow page")
    shot(page, "webapp-workflow")
    shown = [t.inner_text() for t in result.locator(".result-text").all()]
    steps = result.locator(".steps li").count()
    assert steps >= 3

    # Reload in the middle of a run: the same run, followed from its first event: the same
    # text and outputs, each step once, the form as it was.
    upstream.control(pace_ms=150)
    page.get_by_role("button", name="Run").click()
    page.get_by_role("button", name="Stop").wait_for()
    page.reload()
    result = page.get_by_role("region", name="Result")
    result.locator(".status.succeeded").first.wait_for(timeout=30_000)
    assert [t.inner_text() for t in result.locator(".result-text").all()] == shown
    assert result.locator(".steps li").count() == steps
    assert page.get_by_label("Topic (required)").input_value() == "the sea"
    shot(page, "webapp-workflow-resumed")
    upstream.control(pace_ms=5)


def test_workflow_page_shows_an_agent_nodes_tool_calls(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "nodes/agent.yml")
    app.client.close()
    code = site_code(service_admin, app.app_id, title="Helper")
    page.goto(f"{service_stack.base_url}/workflow/{code}")
    page.get_by_role("heading", name="Helper", level=1).wait_for()
    page.get_by_label("Name (required)").fill("Ada")
    page.get_by_label("Question (required)").fill(
        'Please compute eval_expression {"expression": "6*7 + 2**3"}'
    )
    page.get_by_role("button", name="Run").click()
    result = page.get_by_role("region", name="Result")
    result.locator(".status.succeeded").first.wait_for()
    call = result.get_by_test_id("tool-call")
    assert call.get_attribute("data-done") == "true"
    assert "Used eval_expression" in call.locator("summary").inner_text()
    call.locator("summary").click()
    assert '"50"' in call.get_by_test_id("tool-output").inner_text()
    assert "Calling eval_expression.Tool said: 50" in result.inner_text()
    axe(page, context="workflow page with an agent node")
    shot(page, "webapp-workflow-agent")


def test_a_private_site_asks_a_member_to_sign_in(
    page: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    """A site open to its workspace's members only: the page asks for a sign-in and says a
    wrong password and a stranger's account in words; a member signs in and chats."""
    upstream.reset()
    app = service_app(service_stack, service_admin, mode="chat", pre_prompt="You help members.")
    app.client.close()
    code = site_code(service_admin, app.app_id, title="Members only", access_mode="private_all")
    stranger = make_admin(service_stack, workspace="Elsewhere")
    stranger.client.close()
    page.goto(f"{service_stack.base_url}/chat/{code}")
    page.get_by_role("heading", name="Sign in to use this app").wait_for()
    assert "members of its workspace only" in page.locator("main").inner_text()
    axe(page, context="private site's sign-in")
    shot(page, "webapp-private-sign-in")
    form = page.get_by_role("form", name="Sign in")
    form.get_by_label("Email").fill(service_admin.email)
    form.get_by_label("Password").fill("not the password")
    form.get_by_role("button", name="Sign in").click()
    form.get_by_role("alert").filter(has_text="Invalid email or password").wait_for()
    form.get_by_label("Password").fill(stranger.password)
    form.get_by_label("Email").fill(stranger.email)
    form.get_by_role("button", name="Sign in").click()
    form.get_by_role("alert").filter(has_text="permission").wait_for()
    form.get_by_label("Email").fill(service_admin.email)
    form.get_by_label("Password").fill(service_admin.password)
    form.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Members only", level=1).wait_for()
    page.get_by_label("Message").fill("hello members")
    page.get_by_role("button", name="Send").click()
    page.locator(".turn .answer-text").filter(has_text="You said: hello members").wait_for()
    page.reload()  # the sign-in is kept: straight to the page
    page.get_by_role("heading", name="Members only", level=1).wait_for()
    axe(page, context="private site, signed in")
    shot(page, "webapp-private-signed-in")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to use this app").wait_for()
