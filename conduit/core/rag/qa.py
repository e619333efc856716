"""Q&A chunks (Dify's `doc_form: qa_model`), free of I/O: the prompt that asks a chat model
for question–answer pairs about one chunk of a document, and the pairs read back from its
answer (`Q1: … A1: … Q2: …`, the format Dify's generator asks for). Each pair becomes a
segment: the question is what a search compares with the query, the answer rides along."""

from __future__ import annotations

import re

from conduit.core.llm.provider import ChatMessage

# What one pair may hold at most (a model that runs on is cut, not stored whole).
QUESTION_MAX = 2_000
ANSWER_MAX = 8_000

_INSTRUCTIONS = (
    "You write question-and-answer pairs for a knowledge base. Read the text the user sends "
    "and cover what it says in a few pairs: each question is one a reader could ask, clear "
    "on its own; each answer is complete and uses only what the text says. Write in "
    "{language}. Number the pairs and use exactly this format, nothing before or after it:\n"
    "Q1: <question>\nA1: <answer>\nQ2: <question>\nA2: <answer>"
)

# "Q<n>:", its question, "A<n>:", its answer up to the next "Q<m>:" (on a line of its own or
# not: small models put pairs on one line).
_PAIR = re.compile(
    r"(?<!\w)Q(\d+)\s*[:：]\s*(.*?)\s*(?<!\w)A\1\s*[:：]\s*(.*?)(?=\s*(?<!\w)Q\d+\s*[:：]|\Z)",
    re.DOTALL,
)


def qa_prompt(text: str, language: str) -> list[ChatMessage]:
    """The messages that ask for the pairs of one chunk, in `language` (the document's
    `doc_language`)."""
    return [
        ChatMessage("system", _INSTRUCTIONS.format(language=language or "English")),
        ChatMessage("user", f"<text>\n{text}\n</text>"),
    ]


# Markdown a model may wrap the markers in: `**Q1:**`, `__A1:__`, `### Q1:`.
_MARKUP = re.compile(r"(?m)^[ \t]*#+[ \t]*|(?:\*\*|__)(?=[QA]\d+\s*[:：])|(?<=[:：])(?:\*\*|__)")


def parse_pairs(answer: str, *, cut: bool = False) -> list[tuple[str, str]]:
    """The (question, answer) pairs of a model's answer, in its order; a pair with an empty
    question or answer is left out. `cut`: the model stopped at its token limit, so its last
    pair may be incomplete and is left out."""
    text = _MARKUP.sub("", answer.replace("\r\n", "\n"))
    pairs = []
    for _, question, reply in _PAIR.findall(text):
        question, reply = _bare(question), _bare(reply)
        if question and reply:
            pairs.append((question[:QUESTION_MAX], reply[:ANSWER_MAX]))
    return pairs[:-1] if cut else pairs


def _bare(text: str) -> str:
    """The text without a bold marker left unpaired at its end or start (`**Q1: What?**`
    leaves `What?**`); paired ones are the model's own emphasis."""
    text = text.strip()
    for mark in ("**", "__"):
        if text.count(mark) % 2:
            text = text.removesuffix(mark) if text.endswith(mark) else text.removeprefix(mark)
    return text.strip()
