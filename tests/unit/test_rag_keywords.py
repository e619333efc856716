"""Search terms and the engines' query syntax (`conduit/core/rag/keywords.py`), and the hybrid
fusion (`conduit/core/rag/retrieve.py`)."""

from __future__ import annotations

import sqlite3

import pytest

from conduit.core.rag.keywords import MAX_TERMS, fts5_query, normalise_bm25, terms, tsquery
from conduit.core.rag.retrieve import fuse_weighted


class TestTerms:
    def test_words_lowercased_once_each_in_order(self) -> None:
        assert terms("KEEPER, keeper's LOG, log!") == ["keeper", "log"]

    def test_function_words_go_unless_nothing_else_is_left(self) -> None:
        assert terms("What is the paid leave of an employee?") == ["paid", "leave", "employee"]
        assert terms("To be or not to be") == ["to", "be", "or", "not"]
        # Function words do not take the places of the words that count.
        padded = " ".join(["the of and"] * 20 + [f"w{i}" for i in range(40)])
        assert terms(padded) == [f"w{i}" for i in range(MAX_TERMS)]

    def test_query_syntax_never_survives(self) -> None:
        nasty = 'a" OR b) & !c | NEAR(d e) * "'
        words = terms(nasty)
        assert words == ["b", "c", "near", "d", "e"]
        assert all(word.isalnum() for word in words)
        assert tsquery(words) == "b | c | near | d | e"

    def test_non_latin_words_are_words(self) -> None:
        assert terms("Café crème, 東京 и Москва") == ["café", "crème", "東京", "и", "москва"]

    def test_at_most_max_terms(self) -> None:
        assert len(terms(" ".join(f"w{i}" for i in range(100)))) == MAX_TERMS

    @pytest.mark.parametrize("query", ['"', "a AND", "NOT", "(", "x*", "col:val", '""" OR'])
    def test_every_query_is_valid_fts5(self, query: str) -> None:
        connection = sqlite3.connect(":memory:")
        connection.execute("CREATE VIRTUAL TABLE t USING fts5(content)")
        connection.execute("INSERT INTO t VALUES ('a and not x col val or')")
        words = terms(query)
        if words:
            connection.execute("SELECT * FROM t WHERE t MATCH ?", (fts5_query(words),)).fetchall()

    def test_bm25_becomes_a_similarity(self) -> None:
        assert normalise_bm25(0.0) == 0.0
        assert normalise_bm25(-1.0) == 0.5
        assert 0.9 < normalise_bm25(-20.0) < 1.0


class TestFusion:
    def test_weighted_sum_with_missing_scores_as_zero(self) -> None:
        fused = fuse_weighted(
            [("a", 0.9), ("b", 0.5)],
            [("b", 1.0), ("c", 0.8)],
            semantic_weight=0.5,
            keyword_weight=0.5,
        )
        assert fused == [("b", 0.75), ("a", 0.45), ("c", 0.4)]

    def test_ties_keep_the_semantic_order_first(self) -> None:
        fused = fuse_weighted(
            [("x", 0.4), ("y", 0.4)], [("z", 0.4)], semantic_weight=1.0, keyword_weight=1.0
        )
        assert [i for i, _ in fused] == ["x", "y", "z"]
