"""Ranking by cosine similarity (`conduit/core/rag/retrieve.py`), checked against a plain
sort of every score."""

from __future__ import annotations

import numpy as np
import pytest

from conduit.core.rag.embed.base import normalise
from conduit.core.rag.retrieve import fuse_rrf, nearest


def unit_rows(count: int, dimension: int = 16, seed: int = 7) -> np.ndarray:
    return normalise(np.random.default_rng(seed).normal(size=(count, dimension)))


class TestNearest:
    @pytest.mark.parametrize("top_k", [1, 5, 50, 500])
    def test_the_same_as_sorting_every_score(self, top_k: int) -> None:
        matrix = unit_rows(200)
        ids = [f"s{i}" for i in range(200)]
        query = unit_rows(1, seed=11)[0]
        scores = matrix @ query
        expected = sorted(zip(ids, scores.tolist(), strict=True), key=lambda p: -p[1])[:top_k]
        found = nearest(matrix, ids, query, top_k=top_k)
        assert [i for i, _ in found] == [i for i, _ in expected]
        assert np.allclose([s for _, s in found], [s for _, s in expected])

    def test_a_threshold_keeps_only_scores_at_or_above_it(self) -> None:
        matrix = np.eye(3, dtype=np.float32)
        query = np.array([0.8, 0.6, 0.0], dtype=np.float32)
        assert nearest(matrix, ["a", "b", "c"], query, top_k=3, threshold=0.6) == [
            ("a", pytest.approx(0.8)),
            ("b", pytest.approx(0.6)),
        ]

    def test_ties_keep_row_order_and_nothing_comes_of_nothing(self) -> None:
        matrix = np.ones((4, 2), dtype=np.float32) / np.sqrt(2)
        query = np.array([1, 0], dtype=np.float32)
        assert [i for i, _ in nearest(matrix, list("abcd"), query, top_k=3)] == ["a", "b", "c"]
        empty = np.zeros((0, 2), dtype=np.float32)
        assert nearest(empty, [], query, top_k=3) == []
        assert nearest(matrix, list("abcd"), query, top_k=0) == []


class TestReciprocalRankFusion:
    def test_ranks_not_scores_decide_and_first_in_both_is_one(self) -> None:
        semantic = [("a", 0.91), ("b", 0.90), ("c", 0.2)]
        keyword = [("a", 0.01), ("c", 0.009)]  # scores of another scale: only the order counts
        fused = fuse_rrf(semantic, keyword)
        assert [i for i, _ in fused] == ["a", "c", "b"]
        assert fused[0][1] == pytest.approx(1.0)
        assert 0 < fused[-1][1] < fused[1][1] < 1

    def test_one_list_alone_and_ties(self) -> None:
        assert fuse_rrf([], []) == []
        only = fuse_rrf([("x", 0.5), ("y", 0.4)], [])
        assert [i for i, _ in only] == ["x", "y"]
        assert only[0][1] == pytest.approx((1 / 61) / (2 / 61))
        tied = fuse_rrf([("s", 0.9)], [("k", 0.9)])
        assert [i for i, _ in tied] == ["s", "k"]  # semantic's first on a tie
