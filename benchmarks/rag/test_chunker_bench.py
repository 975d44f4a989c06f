"""Chunker throughput (MB/s) and offset exactness: mlsys vs LangChain and chonkie, side by side.

Text: the SciFact corpus concatenated (title, newline, abstract; documents separated by a blank
line; ~7.8 MB) when the shared data is present, else generated text of the same shape. Recursive
splitting at 512 characters with the same separator hierarchy:

* mlsys ``RecursiveChunker(size=512)`` (``\\n\\n``, ``\\n``, ``". "``, ``" "``, ``""``), offsets by
  construction;
* LangChain ``RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=0, add_start_index=True)``
  (offsets recovered with ``str.find``);
* chonkie ``RecursiveChunker(tokenizer="character", chunk_size=512)``.

Each round times every system once, in turn; figures are medians. Offsets are checked for every
chunk: ``text[start:start + len(chunk)] == chunk``. Also: mlsys sliding windows with 25% overlap and
the sentence chunker, and the MiniLM-token recursive chunker on a 1 MB slice. Smoke: 200 KB, 1 round.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import SMOKE, size
from mlsys.rag import RecursiveChunker, SentenceChunker, SlidingWindowChunker

ROUNDS = size(5, 1)


def _text(dataset: Callable[[str], Any]) -> tuple[str, str]:
    if not SMOKE:
        try:
            from mlsys.common.data import load_beir

            ds = load_beir(dataset("scifact"))
            text = "\n\n".join(d["title"] + "\n" + d["text"] for d in ds.corpus.values())
            return text, "SciFact corpus concatenated"
        except pytest.skip.Exception:
            pass
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    docs = []
    total = 0
    while total < size(7_800_000, 200_000):
        sents = [" ".join(rng.choice(words, size=int(rng.integers(8, 30))).tolist()) + "." for _ in range(10)]
        doc = "Title\n" + " ".join(sents)
        docs.append(doc)
        total += len(doc) + 2
    return "\n\n".join(docs), "generated text"


def _offset_errors(text: str, spans: list[tuple[int, str]]) -> int:
    return sum(1 for start, chunk in spans if start < 0 or text[start : start + len(chunk)] != chunk)


def test_chunker_throughput_vs_langchain_and_chonkie(benchmark: Any, dataset: Callable[[str], Any]) -> None:
    text, what = _text(dataset)
    mb = len(text.encode("utf-8")) / 1e6
    ours = RecursiveChunker(size=512)
    systems: dict[str, Callable[[], list[tuple[int, str]]]] = {
        "mlsys RecursiveChunker": lambda: [(c.start, c.text) for c in ours.chunk(text)],
    }
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        lc = RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=0, add_start_index=True)
        systems["langchain RecursiveCharacterTextSplitter"] = lambda: [
            (d.metadata["start_index"], d.page_content) for d in lc.create_documents([text])
        ]
    except ImportError:
        pass
    try:
        import chonkie

        ck = chonkie.RecursiveChunker(tokenizer="character", chunk_size=512)
        systems["chonkie RecursiveChunker"] = lambda: [(c.start_index, c.text) for c in ck(text)]
    except ImportError:
        pass
    sliding = SlidingWindowChunker(size=512, overlap=0.25)
    sentence = SentenceChunker(size=512)
    systems["mlsys SlidingWindowChunker(25%)"] = lambda: [(c.start, c.text) for c in sliding.chunk(text)]
    systems["mlsys SentenceChunker"] = lambda: [(c.start, c.text) for c in sentence.chunk(text)]

    times: dict[str, list[float]] = {n: [] for n in systems}
    outputs: dict[str, list[tuple[int, str]]] = {}
    for _ in range(ROUNDS):
        for name, fn in systems.items():
            t = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t)
    benchmark.pedantic(lambda: ours.chunk(text), rounds=1, iterations=1)

    base = statistics.median(times["mlsys RecursiveChunker"])
    benchmark.extra_info["ratios"] = {  # mlsys RecursiveChunker time / each system's (medians)
        f"recursive_vs_{name.split()[0]}_{name.split()[1]}": base / statistics.median(times[name])
        for name in systems
        if name != "mlsys RecursiveChunker"
    }
    benchmark.extra_info["mb"] = mb
    lines = [
        f"\nChunking {what}: {mb:.2f} MB, 512-character budget, median of {ROUNDS} interleaved rounds; "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}",
        f"  {'system':<42}{'MB/s':>8}{'vs mlsys':>10}{'chunks':>9}{'>512':>7}{'bad offsets':>13}",
    ]
    for name in systems:
        t = statistics.median(times[name])
        spans = outputs[name]
        over = sum(1 for _, c in spans if len(c) > 512)
        lines.append(
            f"  {name:<42}{mb / t:8.2f}{base / t:9.2f}x{len(spans):9d}{over:7d}{_offset_errors(text, spans):13d}"
        )
    # a real tokenizer as the length function (1 MB slice): budget in MiniLM tokens
    try:
        from mlsys.rag import minilm_token_length

        tok = minilm_token_length()
        part = text[: size(1_000_000, 50_000)]
        tchunker = RecursiveChunker(size=128, length=tok)
        t = time.perf_counter()
        tchunks = tchunker.chunk(part)
        dt = time.perf_counter() - t
        worst = max(c.length for c in tchunks)
        lines.append(
            f"  mlsys RecursiveChunker(128 MiniLM tokens) on {len(part) / 1e6:.2f} MB: "
            f"{len(part.encode()) / 1e6 / dt:.2f} MB/s, {len(tchunks)} chunks, largest {worst} tokens"
        )
        assert worst <= 128
    except ImportError:
        pass
    print("\n".join(lines))
    assert _offset_errors(text, outputs["mlsys RecursiveChunker"]) == 0
    assert all(len(c) <= 512 for _, c in outputs["mlsys RecursiveChunker"])
    if not SMOKE:
        for name in systems:
            if not name.startswith("mlsys"):
                ratio = statistics.median(times[name]) / base
                assert ratio >= 1.0, f"mlsys chunks at {ratio:.2f}x the speed of {name}; expected >= 1"
