"""A search query's terms, and the two full-text engines' query syntax built from them.

Raw user text is never handed to an engine's query parser (FTS5's `MATCH` raises on a stray
quote; `to_tsquery` on a stray `&`): the query is reduced to its words, each word quoted (FTS5)
or kept to word characters (tsquery), and the words are OR-ed, so any word may match and the
engine's ranking (BM25, ts_rank_cd) puts documents with more and rarer words first.

English function words ("the", "of", "is", …) are left out of a query that has other words:
they match nearly every passage, so with them an OR query ranks the whole dataset (hundreds
of milliseconds at 100k segments) for scores they barely move. A query of nothing else keeps
them. The index itself keeps every word (FTS5's and the `simple` configuration's tokens).
"""

from __future__ import annotations

import re

MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)
FUNCTION_WORDS = frozenset(
    """a about above after again all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our ours out over own
    s same she should so some such t than that the their theirs them then there these they
    this those through to too under until up very was we were what when where which while
    who whom why will with would you your yours""".split()  # noqa: SIM905 (a word list)
)


def terms(query: str) -> list[str]:
    """The query's distinct lower-cased words, in order, at most `MAX_TERMS`; without
    `FUNCTION_WORDS` unless the query has no other word."""
    found: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in found:
            found.append(word)
    content = [word for word in found if word not in FUNCTION_WORDS]
    return (content or found)[:MAX_TERMS]


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
