"""Word scorers compared by the benchmark: each maps an `Instance` to ``[N]`` scores.

Higher score = keep first. Budgets and ordering are applied by `budget.select_top`.
The oracle reads the future turns and is a ceiling, never a method.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from benches.relevance.data import TARGET_SPAN, Instance, stable_hash
from benches.relevance.encoder import MiniLM
from benches.relevance.lm import SmallLM

_STRIP = re.compile(r"^[^0-9a-z]+|[^0-9a-z]+$")


def norm_word(word: str) -> str:
    """Lower case with leading/trailing punctuation stripped (``"Time,"`` -> ``"time"``)."""
    return _STRIP.sub("", word.lower())


def is_content(norm: str) -> bool:
    return len(norm) >= 2 and norm not in ENGLISH_STOP_WORDS


class Scorer(Protocol):
    name: str

    def score(self, inst: Instance) -> np.ndarray: ...


class RandomScorer:
    """Uniform random scores, seeded per (seed, conversation)."""

    def __init__(self, seed: int) -> None:
        self.seed, self.name = seed, f"random{seed}"

    def score(self, inst: Instance) -> np.ndarray:
        return np.random.default_rng([self.seed, stable_hash(inst.root_id) % 2**32]).random(inst.n_words)


class RecencyScorer:
    """Later words first: score = position."""

    name = "recency"

    def score(self, inst: Instance) -> np.ndarray:
        return np.arange(inst.n_words, dtype=np.float64)


class TfIdfScorer:
    """``tf(w in context) * idf(w)`` with document frequencies over turns of half A."""

    name = "tfidf"

    def __init__(self, documents: Iterable[Iterable[str]]) -> None:
        df: Counter[str] = Counter()
        n = 0
        for doc in documents:
            df.update({norm_word(w) for w in doc})
            n += 1
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
        self.unseen = math.log(1 + n) + 1.0

    def score(self, inst: Instance) -> np.ndarray:
        norms = [norm_word(w) for w in inst.flat_words()]
        tf = Counter(norms)
        return np.array([tf[w] * self.idf.get(w, self.unseen) if w else 0.0 for w in norms])


class EmbeddingScorer:
    """Cosine similarity (MiniLM) of each word's turn to the last context turn."""

    name = "embedding"

    def __init__(self, encoder: MiniLM) -> None:
        self.encoder = encoder

    def score(self, inst: Instance) -> np.ndarray:
        emb = self.encoder.embed([t.text for t in inst.context])
        return (emb @ emb[-1])[inst.turn_index()].astype(np.float64)


class SelfInformationScorer:
    """Selective-Context style: summed token NLL of each word under the half-A LM."""

    def __init__(self, lm: SmallLM, name: str = "selfinfo") -> None:
        self.lm, self.name = lm, name

    def score(self, inst: Instance) -> np.ndarray:
        return self.lm.word_nll(inst.context)


class ContrastScorer:
    """LongLLMLingua-style contrast: NLL(w | context) - NLL(w | last turn, context)."""

    def __init__(self, lm: SmallLM, name: str = "contrast") -> None:
        self.lm, self.name = lm, name

    def score(self, inst: Instance) -> np.ndarray:
        plain = self.lm.word_nll(inst.context)
        query = inst.context[-1]
        primed = self.lm.word_nll((query, *inst.context))[len(query.words) :]
        return plain - primed


class OracleScorer:
    """Future-lexical oracle: content words reused in turns t..t+2 first (rarer first via length)."""

    name = "oracle"

    def score(self, inst: Instance) -> np.ndarray:
        future = {norm_word(w) for t in inst.targets[:TARGET_SPAN] for w in t.words}
        norms = [norm_word(w) for w in inst.flat_words()]
        return np.array([(2.0 if is_content(w) else 1.0) if w and w in future else 0.0 for w in norms])


def baseline_scorers(
    encoder: MiniLM,
    lm_a: SmallLM,
    tfidf_docs: Iterable[Iterable[str]],
    random_seeds: int = 5,
    lm_seeds: Sequence[SmallLM] = (),
) -> list:
    """All baselines of the protocol (random x seeds, recency, TF-IDF, embedding, self-info, contrast).

    ``lm_seeds``: scorer LMs trained with seeds 1, 2, ... (the learned baselines' other seeds),
    added as ``selfinfo_seed<k>`` and ``contrast_seed<k>``.
    """
    seeded = [
        scorer(lm, f"{base}_seed{k}")
        for k, lm in enumerate(lm_seeds, start=1)
        for scorer, base in ((SelfInformationScorer, "selfinfo"), (ContrastScorer, "contrast"))
    ]
    return [
        *(RandomScorer(s) for s in range(random_seeds)),
        RecencyScorer(),
        TfIdfScorer(tfidf_docs),
        EmbeddingScorer(encoder),
        SelfInformationScorer(lm_a),
        ContrastScorer(lm_a),
        *seeded,
    ]
