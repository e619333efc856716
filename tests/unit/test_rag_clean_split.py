"""Dify's cleaning rules and token-aware splitting (`conduit/core/rag/clean.py`, `split.py`),
sized with the local model's own tokenizer file."""

from __future__ import annotations

import pytest

from conduit.core.rag.clean import CleaningRules, clean
from conduit.core.rag.embed.local import CONTENT_TOKENS, tokenizer
from conduit.core.rag.split import Segmentation, Splitter

SPLITTER = Splitter(tokenizer())
PROSE = " ".join(
    f"Sentence number {i} talks about topic {i % 7} in some detail, as prose does."
    for i in range(200)
)


class TestClean:
    def test_control_characters_and_chat_markers_always_go(self) -> None:
        text = "a\x00b\x07c <|im_start|>system\r\nnext\x7f"
        assert clean(text, CleaningRules(remove_extra_spaces=False)) == (
            "abc <im_start>system\nnext"
        )

    def test_extra_spaces(self) -> None:
        text = "one  two\t\tthree\n\n\n\nfour \u3000 five\tsix"
        assert clean(text, CleaningRules()) == "one two three\n\nfour five\tsix"

    def test_spaces_are_kept_when_the_rule_is_off(self) -> None:
        text = "one  two\n\n\n\nthree"
        assert clean(text, CleaningRules(remove_extra_spaces=False)) == text

    def test_urls_and_emails(self) -> None:
        text = (
            "Write to ada@example.co.uk or see https://example.com/a?b=c, www.example.org and "
            "[the docs](https://docs.example.com/x). ![logo](https://example.com/l.png)Done."
        )
        assert clean(text, CleaningRules(remove_urls_emails=True)) == (
            "Write to or see , and the docs. Done."
        )

    def test_urls_stay_when_the_rule_is_off(self) -> None:
        text = "see https://example.com"
        assert clean(text, CleaningRules()) == text


class TestSegmentation:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"max_tokens": 49}, "max_tokens must be between 50 and 4000, not 49"),
            ({"max_tokens": 4001}, "max_tokens must be between 50 and 4000"),
            ({"max_tokens": 100, "chunk_overlap": 100}, "chunk_overlap must be .* less than"),
            ({"chunk_overlap": -1}, "chunk_overlap must be at least 0"),
            ({"mode": "custom", "separator": ""}, "separator must not be empty"),
        ],
    )
    def test_bad_settings_name_the_field(self, fields: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Segmentation(**fields)  # type: ignore[arg-type]

    def test_an_escaped_newline_separator_is_a_newline(self) -> None:
        assert Segmentation(mode="custom", separator="\\n\\n").separator_text == "\n\n"


class TestSplit:
    def test_sizes_count_every_token_not_the_truncated_256(self) -> None:
        assert SPLITTER.count(PROSE) > 2000
        chunks = SPLITTER.split(PROSE, Segmentation(max_tokens=CONTENT_TOKENS, chunk_overlap=0))
        assert len(chunks) > 8

    @pytest.mark.parametrize(("size", "overlap"), [(50, 0), (100, 20), (254, 25), (500, 50)])
    def test_every_chunk_fits_and_together_they_cover_the_text(
        self, size: int, overlap: int
    ) -> None:
        chunks = SPLITTER.split(PROSE, Segmentation(max_tokens=size, chunk_overlap=overlap))
        assert all(SPLITTER.count(chunk) <= size for chunk in chunks)
        position = 0
        for chunk in chunks:  # each chunk is a piece of the text, in order
            found = PROSE.find(chunk, max(0, position - len(chunk)))
            assert found >= 0
            assert found + len(chunk) > position
            position = found + len(chunk)
        assert position == len(PROSE)

    def test_overlap_repeats_the_end_of_the_previous_chunk(self) -> None:
        chunks = SPLITTER.split(PROSE, Segmentation(max_tokens=100, chunk_overlap=30))
        starts = [PROSE.find(chunk) for chunk in chunks]
        ends = [start + len(chunk) for start, chunk in zip(starts, chunks, strict=True)]
        assert any(starts[i + 1] < ends[i] for i in range(len(chunks) - 1))
        plain = SPLITTER.split(PROSE, Segmentation(max_tokens=100, chunk_overlap=0))
        assert len(plain) < len(chunks)

    def test_custom_mode_cuts_at_every_separator_first(self) -> None:
        text = "Q: one?\nA: yes.\n\nQ: two?\nA: no.\n\n\n\nQ: three?\nA: maybe."
        chunks = SPLITTER.split(text, Segmentation(mode="custom", separator="\\n\\n"))
        assert chunks == ["Q: one?\nA: yes.", "Q: two?\nA: no.", "Q: three?\nA: maybe."]

    def test_custom_mode_cuts_a_long_piece_further(self) -> None:
        text = f"short piece\n{PROSE}\nanother short piece"
        chunks = SPLITTER.split(text, Segmentation(mode="custom", max_tokens=120))
        assert chunks[0] == "short piece"
        assert chunks[-1] == "another short piece"
        assert len(chunks) > 10
        assert all(SPLITTER.count(chunk) <= 120 for chunk in chunks)

    def test_markdown_prefers_heading_boundaries(self) -> None:
        sections = [f"# Part {n}\n\n" + " ".join(["word"] * 60) for n in range(4)]
        text = "\n\n".join(sections)
        chunks = SPLITTER.split(text, Segmentation(max_tokens=80, chunk_overlap=0), markdown=True)
        assert [chunk.splitlines()[0] for chunk in chunks] == [f"# Part {n}" for n in range(4)]

    def test_blank_text_gives_no_segments(self) -> None:
        assert SPLITTER.split("  \n\n  ", Segmentation()) == []
        assert SPLITTER.split("\n\n\n", Segmentation(mode="custom")) == []
