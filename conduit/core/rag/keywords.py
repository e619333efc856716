"""A search query's terms, and the two full-text engines' query syntax built from them.

Raw user text is never handed to an engine's query parser (FTS5's `MATCH` raises on a stray
quote; `to_tsquery` on a stray `&`): the query is reduced to its words, each word quoted (FTS5)
or kept to word characters (tsquery), and the words are OR-ed, so any word may match and the
engine's ranking (BM25, ts_rank_cd) puts documents with more and rarer words first.
"""

from __future__ import annotations

import re

MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


def terms(query: str) -> list[str]:
    """The query's distinct lower-cased words, in order, at most `MAX_TERMS`."""
    found: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in found:
            found.append(word)
        if len(found) == MAX_TERMS:
            break
    return found


def fts5_query(words: list[str]) -> str:
    """`"a" OR "b"`: each word a quoted FTS5 string (its quotes doubled)."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def tsquery(words: list[str]) -> str:
    """`a | b` for `to_tsquery('simple', …)`: words are word characters only, so nothing in
    them is tsquery syntax."""
    return " | ".join(words)


def normalise_bm25(score: float) -> float:
    """FTS5's bm25() (lower is better, ≤ 0) as a similarity in [0, 1)."""
    positive = max(0.0, -score)
    return positive / (1.0 + positive)
