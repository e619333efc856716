"""Clean text to segments, sized in tokens of the embedding model's tokenizer.

`automatic`: the text is cut at its most natural boundaries (paragraphs, then sentences, then
words; Markdown at headings and blocks first) into chunks of at most `max_tokens` tokens that
overlap by up to `chunk_overlap`. `custom`: the text is first cut at every `separator` (Dify's
"segment identifier"; `\\n` written with a backslash counts as a newline), each piece a segment
of its own, and only a piece over `max_tokens` is cut further as in `automatic`.

Parent-child (`hierarchical`, Dify's `hierarchical_model`): the parents are cut as in `custom`
mode (`paragraph`) or are the whole text up to `FULL_DOC_TOKENS` (`full-doc`); each parent is
then cut into children by the child rule, as in `custom` mode. A search compares the children
with the query and returns their parent.

Sizes are counted with a copy of the tokenizer that neither truncates nor pads: the embedding
tokenizer truncates at 256 (its file even says 128), and counting with it would find every text
short enough and never split anything. semantic-text-splitter does the cutting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semantic_text_splitter import MarkdownSplitter, TextSplitter
from tokenizers import Tokenizer

MIN_MAX_TOKENS = 50
MAX_MAX_TOKENS = 4000
FULL_DOC_TOKENS = 10_000  # Dify's: a `full-doc` parent keeps the text's first 10,000 tokens
PARENT_MODES = ("paragraph", "full-doc")
_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r"}


@dataclass(frozen=True, slots=True)
class Segmentation:
    mode: Literal["automatic", "custom"] = "automatic"
    separator: str = "\n"
    max_tokens: int = 500
    chunk_overlap: int = 50

    def __post_init__(self) -> None:
        if not MIN_MAX_TOKENS <= self.max_tokens <= MAX_MAX_TOKENS:
            raise ValueError(
                f"max_tokens must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}, "
                f"not {self.max_tokens}"
            )
        if not 0 <= self.chunk_overlap < self.max_tokens:
            raise ValueError(
                f"chunk_overlap must be at least 0 and less than max_tokens ({self.max_tokens}), "
                f"not {self.chunk_overlap}"
            )
        if self.mode == "custom" and not self.separator:
            raise ValueError("separator must not be empty in custom mode")

    @property
    def separator_text(self) -> str:
        separator = self.separator
        for escaped, character in _ESCAPES.items():
            separator = separator.replace(escaped, character)
        return separator


@dataclass(frozen=True, slots=True)
class ParentChild:
    """A parent-child rule: how parents are cut (`paragraph`: by `parent`; `full-doc`: the
    whole text) and how each parent is cut into children (`child`, in custom mode)."""

    parent_mode: Literal["paragraph", "full-doc"]
    parent: Segmentation
    child: Segmentation


class Splitter:
    """Splits text for one tokenizer; safe to share (the splitters hold no per-call state)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        sizer = Tokenizer.from_str(tokenizer.to_str())
        sizer.no_truncation()
        sizer.no_padding()
        self._sizer = sizer

    def count(self, text: str) -> int:
        """Tokens in `text`, without the model's special tokens."""
        return len(self._sizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str, segmentation: Segmentation, *, markdown: bool = False) -> list[str]:
        chunker = self._chunker(segmentation, markdown=markdown)
        if segmentation.mode == "automatic":
            return [chunk for chunk in chunker.chunks(text) if chunk.strip()]
        segments: list[str] = []
        for piece in text.split(segmentation.separator_text):
            piece = piece.strip()
            if not piece:
                continue
            if self.count(piece) <= segmentation.max_tokens:
                segments.append(piece)
            else:
                segments.extend(chunk for chunk in chunker.chunks(piece) if chunk.strip())
        return segments

    def head(self, text: str, tokens: int) -> str:
        """The text up to its `tokens`-th token (all of it when shorter). Only a prefix is
        tokenized, widened until it holds enough tokens: a whole upload's offsets would take
        hundreds of megabytes."""
        size = tokens * 8
        while True:
            prefix = text[:size]
            offsets = self._sizer.encode(prefix, add_special_tokens=False).offsets
            if len(offsets) > tokens:
                return text[: offsets[tokens - 1][1]]
            if len(prefix) == len(text):
                return text
            size *= 2

    def split_parent_child(
        self, text: str, rule: ParentChild, *, markdown: bool = False
    ) -> list[tuple[str, list[str]]]:
        """(parent, its children) pairs; a parent without text is left out."""
        if rule.parent_mode == "full-doc":
            whole = self.head(text, FULL_DOC_TOKENS).strip()
            parents = [whole] if whole else []
        else:
            parents = self.split(text, rule.parent, markdown=markdown)
        return [(parent, self.split(parent, rule.child)) for parent in parents]

    def _chunker(
        self, segmentation: Segmentation, *, markdown: bool
    ) -> TextSplitter | MarkdownSplitter:
        kind = MarkdownSplitter if markdown else TextSplitter
        return kind.from_huggingface_tokenizer(
            self._sizer, capacity=segmentation.max_tokens, overlap=segmentation.chunk_overlap
        )
