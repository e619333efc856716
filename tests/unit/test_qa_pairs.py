"""Q&A documents' pairs read back from a chat model's answer (`core/rag/qa.py`): Dify's
`Q1: … A1: …` format, on lines of their own or not, in Markdown, cut short, or not there."""

from __future__ import annotations

import pytest

from conduit.core.rag.qa import parse_pairs, qa_prompt


@pytest.mark.parametrize(
    ("answer", "pairs"),
    [
        ("Q1: What time?\nA1: Seven.\nQ2: Where?\nA2: Pier four,\nnorth side.\n",
         [("What time?", "Seven."), ("Where?", "Pier four,\nnorth side.")]),
        ("Here you are:\n\nQ1: A?\nA1: B\n", [("A?", "B")]),
        ("Q1: X? A1: Y Q2: Z? A2: W", [("X?", "Y"), ("Z?", "W")]),
        ("Q1：中文？\nA1：是的", [("中文？", "是的")]),
        ("**Q1:** What?\n**A1:** This.", [("What?", "This.")]),
        ("**Q1: What?**\n**A1: This.**", [("What?", "This.")]),
        ("### Q1: What?\nA1: This.", [("What?", "This.")]),
        ("Q1: Is **this** kept?\nA1: Yes, **bold** stays.",
         [("Is **this** kept?", "Yes, **bold** stays.")]),
        ("Q1: What is FAQ2 about? A1: Lists. Q2: Why? A2: Because.",
         [("What is FAQ2 about?", "Lists."), ("Why?", "Because.")]),
        ("Q1: Only a question", []),
        ("Q1: A question?\nA1:", []),
        ("You said: hello", []),
    ],
)  # fmt: skip
def test_pairs_are_read_in_order(answer: str, pairs: list[tuple[str, str]]) -> None:
    assert parse_pairs(answer) == pairs


def test_an_answer_cut_at_the_token_limit_loses_its_last_pair() -> None:
    answer = "Q1: A?\nA1: B\nQ2: C?\nA2: D, and then the mod"
    assert parse_pairs(answer, cut=True) == [("A?", "B")]


def test_the_prompt_asks_in_the_documents_language_with_the_text_apart() -> None:
    system, user = qa_prompt("The ferry leaves at seven.", "French")
    assert (system.role, user.role) == ("system", "user")
    assert "Write in French." in system.content and "Q1:" in system.content
    assert user.content == "<text>\nThe ferry leaves at seven.\n</text>"
