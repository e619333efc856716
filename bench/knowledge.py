"""Knowledge bases: how fast a document is indexed, and how fast a dataset answers a search.

    .venv/bin/python bench/knowledge.py                 # 3 runs, both modes, medians (~6 min)
    .venv/bin/python bench/knowledge.py --runs 1 --mode embedded
    .venv/bin/python bench/knowledge.py --kb 1024 --runs 3      # the issue's 1 MB document

Everything is started here and stopped at the end (the stack of `bench/sse_streams.py`:
`conduit serve`, and in the distributed mode a fresh PostgreSQL database, Redis and a
`conduit worker`). Per mode and run:

- `model` (the baseline, in this process): the local embedding model alone (onnxruntime, batches
  of 8) embedding the document's own segments: segments per second.
- `index`: the same document (384 KB of prose by default, `--kb`) through `create-by-text`,
  from the POST to `indexing-status` saying `completed` (polled every 50 ms): seconds and
  segments per second, and the ratio to the model's rate (what the pipeline keeps of it:
  parsing, splitting, the cache, the guarded commits, the queue).
- `retrieve`: 200 searches one after another (`POST /v1/datasets/{id}/retrieve`, top_k 4) on
  that dataset: p50 / p99 ms, the server's CPU ms per search, beside the floor (`GET
  /v1/datasets/{id}` the same number of times: the key, one read, one view).

The figures that carry across machines are the ratios and CPU per search; latencies on a shared
2-core box are what they are on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sse_streams import (
    Stack,
    machine,
    prepare_site,
    revision,
    start_conduit,
    start_upstream,
    stop_target,
)
from conduit.core.rag.clean import CleaningRules, clean
from conduit.core.rag.embed.local import CONTENT_TOKENS, LocalEmbedder, tokenizer
from conduit.core.rag.split import Segmentation, Splitter

TOPICS = ["harbour", "lighthouse", "engine", "garden", "library", "kitchen", "orchard", "bridge"]


def book(chapters: int) -> str:
    """About 3.2 KB of prose per chapter (120 chapters: 384 KB)."""
    return "\n\n".join(
        f"Chapter {n} is about the {TOPICS[n % len(TOPICS)]}. "
        + " ".join(
            f"Paragraph {n}.{i} says the {TOPICS[(n + i) % len(TOPICS)]} keeper counted {i * 7} "
            "visitors before noon, wrote it down and locked the door."
            for i in range(30)
        )
        for n in range(chapters)
    )


QUERIES = [f"how many visitors came to the {topic} before noon" for topic in TOPICS] + [
    f"who locks the {topic} door" for topic in TOPICS
]
SEARCHES = 200


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def model_rate(segments: list[str]) -> float:
    embedder = LocalEmbedder(batch_size=8)
    embedder.embed(segments[:8])  # load and warm
    began = time.perf_counter()
    embedder.embed(segments)
    return len(segments) / (time.perf_counter() - began)


def knowledge_key(port: int) -> str:
    base = f"http://127.0.0.1:{port}/console/api"
    with httpx.Client(timeout=30) as client:
        login = client.post(
            f"{base}/login", json={"email": "bench@example.com", "password": "long password"}
        )
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
        key = client.post(f"{base}/datasets/api-keys", headers=auth)
        key.raise_for_status()
        return str(key.json()["data"]["token"])


def one_run(mode: str, text: str, segments: list[str], rate: float) -> dict[str, float]:
    stack = Stack(keep=False)
    try:
        upstream = start_upstream(stack)
        site = prepare_site(stack, mode, upstream)
        target = start_conduit(stack, site, upstream)
        server = psutil.Process(target.pid)
        headers = {"Authorization": f"Bearer {knowledge_key(target.port)}"}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{target.port}/v1", headers=headers, timeout=120
        ) as kb:
            dataset = kb.post("/datasets", json={"name": f"bench {time.time_ns()}"}).json()
            began = time.perf_counter()
            created = kb.post(
                f"/datasets/{dataset['id']}/document/create-by-text",
                json={
                    "name": "book",
                    "text": text,
                    "indexing_technique": "high_quality",
                    "process_rule": {"mode": "automatic"},
                },
            )
            created.raise_for_status()
            batch = created.json()["batch"]
            while True:
                item = kb.get(
                    f"/datasets/{dataset['id']}/documents/{batch}/indexing-status"
                ).json()["data"][0]
                if item["indexing_status"] in ("completed", "error"):
                    break
                time.sleep(0.05)
            took = time.perf_counter() - began
            if item["indexing_status"] != "completed":
                raise RuntimeError(f"indexing failed: {item['error']}")
            if item["total_segments"] != len(segments):
                raise RuntimeError(f"{item['total_segments']} segments, expected {len(segments)}")

            def timed(call: Any) -> tuple[list[float], float]:
                cpu = sum(server.cpu_times()[:2])
                spent = []
                for index in range(SEARCHES):
                    start = time.perf_counter()
                    response = call(index)
                    spent.append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
                return spent, (sum(server.cpu_times()[:2]) - cpu) * 1000 / SEARCHES

            url = f"/datasets/{dataset['id']}/retrieve"
            kb.post(url, json={"query": "warm up"}).raise_for_status()
            searches, search_cpu = timed(
                lambda i: kb.post(
                    url, json={"query": QUERIES[i % len(QUERIES)], "retrieval_model": {"top_k": 4}}
                )
            )
            floor, floor_cpu = timed(lambda i: kb.get(f"/datasets/{dataset['id']}"))
        stop_target(stack, target)
        seg_rate = len(segments) / took
        return {
            "index_s": took,
            "index_rate": seg_rate,
            "ratio": seg_rate / rate,
            "search_p50": pct(searches, 50),
            "search_p99": pct(searches, 99),
            "search_cpu": search_cpu,
            "floor_p50": pct(floor, 50),
            "floor_p99": pct(floor, 99),
            "floor_cpu": floor_cpu,
        }
    finally:
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=["embedded", "distributed", "both"], default="both")
    parser.add_argument("--kb", type=int, default=384, help="the document's size (KB)")
    args = parser.parse_args()
    modes = ["embedded", "distributed"] if args.mode == "both" else [args.mode]
    text = book(max(1, round(120 * args.kb / 384)))
    segments = Splitter(tokenizer()).split(
        clean(text, CleaningRules()), Segmentation(max_tokens=CONTENT_TOKENS, chunk_overlap=25)
    )
    print(f"# {machine()}; code {revision()}; {len(text) // 1024} KB, {len(segments)} segments")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    rates = []
    for run in range(args.runs):
        rate = model_rate(segments)
        rates.append(rate)
        for mode in modes:
            found = one_run(mode, text, segments, rate)
            results[mode].append(found)
            print(f"run {run + 1} {mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    print()
    print(f"model alone: {statistics.median(rates):.1f} segments/s (median of {len(rates)})")
    print()
    print("| | " + " | ".join(modes) + " |")
    print("|---|" + "---:|" * len(modes))
    rows = [
        ("index: seconds for the document", "index_s", 1),
        ("index: segments per second", "index_rate", 1),
        ("index: ÷ the model alone", "ratio", 2),
        ("retrieve p50 / p99 ms", ("search_p50", "search_p99"), 1),
        ("retrieve: server CPU ms per search", "search_cpu", 2),
        ("floor (GET dataset) p50 / p99 ms", ("floor_p50", "floor_p99"), 1),
        ("floor: server CPU ms per request", "floor_cpu", 2),
    ]
    for label, key, digits in rows:
        cells = []
        for mode in modes:
            if isinstance(key, tuple):
                cells.append(" / ".join(f"{med(mode, k):.{digits}f}" for k in key))
            else:
                cells.append(f"{med(mode, key):.{digits}f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
