"""J1 / J1b / J3: which next user turn does a (compressed) context retrieve?

Candidates for instance i are its true turn t plus 99 negatives: user turns of *other*
test conversations in the same log2-length bucket (nearest buckets when one runs dry),
drawn once with a fixed seed and saved; R@1 of 10 uses the first 9. A hard set holds up
to 9 user turns of the same conversation *after* the cut (turn t+2 and later): turns of the
context would be found verbatim in a full context, so they make no test; a conversation
without such a turn has no hard R@1 (NaN, left out of its mean). Scores: MiniLM cosine (J1, biased toward
anything trained on MiniLM targets) and BM25 (J1b). J3 fidelity is the Spearman
correlation of the 100 MiniLM candidate scores under the compressed vs the full context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rank_bm25 import BM25Okapi
from scipy.stats import spearmanr

from benches.relevance.data import Instance, stable_hash
from benches.relevance.scorers import norm_word

N_NEGATIVES = 99
N_HARD = 9
HARD_SOURCE = "future"  # marks candidate sets whose hard negatives come from after the cut


def length_bucket(n_words: int) -> int:
    return int(math.floor(math.log2(max(n_words, 1))))


def bm25_tokens(text: str) -> list[str]:
    return [w for w in (norm_word(x) for x in text.split()) if w]


@dataclass
class CandidateSets:
    """``texts``: candidate turn texts; per instance the positive id, negative ids, hard ids."""

    texts: list[str]
    positive: list[int]
    negatives: list[list[int]]
    hard: list[list[int]]

    def to_json(self) -> dict:
        return {
            "texts": self.texts,
            "positive": self.positive,
            "negatives": self.negatives,
            "hard": self.hard,
            "hard_source": HARD_SOURCE,
        }

    @classmethod
    def from_json(cls, data: dict) -> CandidateSets:
        return cls(data["texts"], data["positive"], data["negatives"], data["hard"])


def build_candidate_sets(
    instances: Sequence[Instance], seed: int, n_negatives: int = N_NEGATIVES
) -> CandidateSets:
    """Draw the shared negatives once (fixed seed); see the module docstring."""
    texts: list[str] = []
    owner: list[int] = []
    index: dict[tuple[int, str], int] = {}

    def add(i: int, text: str) -> int:
        if (i, text) not in index:
            index[(i, text)] = len(texts)
            texts.append(text)
            owner.append(i)
        return index[(i, text)]

    positive, pools = [], []
    for i, inst in enumerate(instances):
        positive.append(add(i, inst.targets[0].text))
        pools.append(
            [
                add(i, t.text)
                for t in (*inst.context, *inst.targets[1:])
                if t.role == "user" and len(t.words) >= 3 and t.text != inst.targets[0].text
            ]
        )
    user_pool = sorted({c for p in pools for c in p} | set(positive))
    bucket_of = {c: length_bucket(len(texts[c].split())) for c in user_pool}
    negatives, hard = [], []
    for i, inst in enumerate(instances):
        rng = np.random.default_rng([seed, stable_hash(inst.root_id) % 2**32])
        others = [c for c in user_pool if owner[c] != i]
        target_bucket = bucket_of[positive[i]]
        rng.shuffle(others)
        others.sort(key=lambda c: abs(bucket_of[c] - target_bucket))  # stable: random within a bucket
        negatives.append([int(c) for c in others[:n_negatives]])
        role = inst.targets[0].role
        same = [
            add(i, t.text)
            for t in (*inst.targets[1:], *inst.later)
            if t.role == role and len(t.words) >= 3 and t.text != inst.targets[0].text
        ]
        same = list(dict.fromkeys(same))
        rng.shuffle(same)
        hard.append([int(c) for c in same[:N_HARD]])
    return CandidateSets(texts, positive, negatives, hard)


def _rank_metrics(scores: np.ndarray, n_small: int) -> tuple[float, float, float]:
    """Scores ``[1 + K]`` with the positive first -> (R@1 of 1+n_small, R@1 of all, reciprocal rank).

    Ties with a negative count against the positive.
    """
    pos = scores[0]
    rank = 1 + int((scores[1:] >= pos).sum())
    r_small = float((scores[1 : 1 + n_small] < pos).all())
    return r_small, float(rank == 1), 1.0 / rank


class RetrievalJudge:
    """J1 (MiniLM), J1b (BM25) and J3 (fidelity) over saved candidate sets."""

    def __init__(self, sets: CandidateSets, candidate_embeddings: np.ndarray) -> None:
        self.sets, self.emb = sets, candidate_embeddings
        self.bm25 = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in sets.texts])

    def evaluate(
        self, i: int, query_embeddings: np.ndarray, query_texts: Sequence[str], full_embedding: np.ndarray
    ) -> list[dict[str, float]]:
        """Metrics for each query of instance ``i``; ``query_embeddings`` is ``[Q, 384]``."""
        cands = [self.sets.positive[i], *self.sets.negatives[i]]
        hard = [self.sets.positive[i], *self.sets.hard[i]]
        full_scores = self.emb[cands] @ full_embedding
        out = []
        for q_emb, q_text in zip(query_embeddings, query_texts, strict=False):
            dense = self.emb[cands] @ q_emb
            r10, r100, mrr = _rank_metrics(dense, 9)
            hard_r1 = _rank_metrics(self.emb[hard] @ q_emb, len(hard) - 1)[0] if len(hard) > 1 else np.nan
            tokens = bm25_tokens(q_text)
            sparse = self.bm25.get_batch_scores(tokens, cands) if tokens else np.zeros(len(cands))
            b10, b100, bmrr = _rank_metrics(np.asarray(sparse), 9)
            rho = spearmanr(dense, full_scores).statistic if np.ptp(dense) > 0 else 0.0
            out.append(
                {
                    "j1_r1_10": r10,
                    "j1_r1_100": r100,
                    "j1_mrr": mrr,
                    "j1_hard_r1": hard_r1,
                    "j1b_r1_10": b10,
                    "j1b_r1_100": b100,
                    "j1b_mrr": bmrr,
                    "j3_fidelity": float(rho),
                }
            )
        return out
