"""Dify's pre-processing rules, applied to extracted text before it is split.

Always: control characters (other than tab and newline) are dropped and the `<|` / `|>` of chat
templates are defused to `<` / `>`, so a document cannot smuggle special tokens into a prompt.
`remove_extra_spaces`: three or more newlines become two, and runs of spaces and tabs one space.
`remove_urls_emails`: e-mail addresses and URLs are removed; a Markdown link keeps its text, a
Markdown image goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_CRLF = re.compile(r"\r\n?")
_NEWLINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[\t\f\x20\u00a0\u1680\u180e\u2000-\u200a\u202f\u205f\u3000]{2,}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\((?:https?://|www\.)[^)]*\)")
# A URL does not end on the punctuation of the sentence around it.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'()\[\]]*[^\s<>\"'()\[\].,;:!?]")


@dataclass(frozen=True, slots=True)
class CleaningRules:
    remove_extra_spaces: bool = True
    remove_urls_emails: bool = False


def clean(text: str, rules: CleaningRules) -> str:
    text = _CRLF.sub("\n", text)
    text = _CONTROL.sub("", text).replace("<|", "<").replace("|>", ">")
    if rules.remove_urls_emails:
        text = _MD_IMAGE.sub("", text)
        text = _MD_LINK.sub(r"\1", text)
        text = _EMAIL.sub("", text)
        text = _URL.sub("", text)
    if rules.remove_extra_spaces:
        text = _NEWLINES.sub("\n\n", text)
        text = _SPACES.sub(" ", text)
    return text.strip()
