"""A small causal LM with its own byte-level BPE: the self-information scorer and the J2 judge.

Both LMs are a tiny GPT-2 built from a config (no download) over a BPE vocabulary trained
with `tokenizers` on their own half of the training split (A for scoring, B for judging),
so the judge never shares parameters or vocabulary with a scorer.

Token ids of a dialogue are built word by word (``" " + word``) after a forced speaker tag
(``"\\nUser:"``), so every token belongs to exactly one context word or to a tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel

from benches.relevance.data import Turn
from worldmodel.checkpoint import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from worldmodel.run import progress

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int = 2048
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 640
    steps: int = 300
    batch_size: int = 8
    lr: float = 3e-3
    target_tokens: int = 160  # cap on the target span given to the judge
    seed: int = 0
    # Share of each batch given as (compressed context, intact next turns) pairs instead of plain
    # windows: a judge that has seen scattered kept words can read what the methods keep.
    compressed: float = 0.0


def _parse_rendered(text: str) -> list[Turn]:
    """Turns of a `render_turns` text (``"User: ...\nAssistant: ..."``, one turn per line)."""
    lines = (line.partition(": ") for line in text.split("\n"))
    return [Turn(role.lower(), tuple(rest.split())) for role, sep, rest in lines if sep]


def train_bpe(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE trained on ``texts`` with ``EOS`` as its only special token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_gpt2(tokenizer: Tokenizer, config: LMConfig) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 sized by ``config`` over ``tokenizer``'s vocabulary (no dropout)."""
    eos = tokenizer.token_to_id(EOS)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=tokenizer.get_vocab_size(),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    )


class SmallLM:
    """Tokenizer + GPT-2 pair with word-aligned NLL helpers."""

    def __init__(self, tokenizer: Tokenizer, model: GPT2LMHeadModel, config: LMConfig) -> None:
        self.tokenizer, self.model, self.config = tokenizer, model.eval(), config
        self.eos = tokenizer.token_to_id(EOS)
        self._word_cache: dict[str, list[int]] = {}

    # ---- building ----
    @classmethod
    def train(cls, texts: Sequence[str], config: LMConfig, desc: str = "lm") -> SmallLM:
        """Train BPE and a GPT-2 from scratch on ``texts`` (random windows of ``n_positions``)."""
        torch.manual_seed(config.seed)
        tokenizer = train_bpe(texts, config.vocab_size)
        gpt = build_gpt2(tokenizer, config)
        lm = cls(tokenizer, gpt, config)
        stream = np.concatenate([[lm.eos] + e.ids for e in tokenizer.encode_batch(list(texts))]).astype(
            np.int64
        )
        window = min(config.n_positions, len(stream) - 1)
        rng = np.random.default_rng(config.seed)
        optim = torch.optim.AdamW(gpt.parameters(), lr=config.lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optim, config.lr, total_steps=max(config.steps, 1), pct_start=0.1
        )
        dialogues = [_parse_rendered(t) for t in texts] if config.compressed > 0 else []
        n_compressed = round(config.batch_size * config.compressed)
        gpt.train()
        for _ in progress(range(config.steps), desc=f"train {desc}"):
            starts = rng.integers(0, len(stream) - window, size=config.batch_size - n_compressed)
            rows = [stream[s : s + window] for s in starts]
            rows += [lm._compressed_sample(dialogues, rng, window) for _ in range(n_compressed)]
            batch = torch.full((len(rows), window), lm.eos, dtype=torch.long)
            labels = torch.full_like(batch, -100)
            for r, row in enumerate(rows):
                batch[r, : len(row)] = labels[r, : len(row)] = torch.as_tensor(row)
            loss = gpt(input_ids=batch, labels=labels).loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
            optim.step()
            sched.step()
        gpt.eval()
        return lm

    def _compressed_sample(
        self, dialogues: list[list[Turn]], rng: np.random.Generator, window: int
    ) -> list[int]:
        """EOS, a seeded cut's context with each word kept with probability U(0.1, 1), then up to three
        intact turns: the layout `target_nll` scores, left-truncated to ``window`` tokens."""
        turns = dialogues[int(rng.integers(len(dialogues)))]
        cut = int(rng.integers(1, len(turns))) if len(turns) > 1 else 0
        keep = rng.uniform(0.1, 1.0)
        context = [Turn(t.role, tuple(w for w in t.words if rng.random() < keep)) for t in turns[:cut]]
        ids = [self.eos, *self.turns_ids([*context, *turns[cut : cut + 3]])[0]]
        return ids[-window:]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        atomic_write_text(path.with_suffix(".tokenizer.json"), self.tokenizer.to_str())
        save_checkpoint(path, {"model": self.model.state_dict()}, {"config": asdict(self.config)})

    @classmethod
    def load(cls, path: str | Path) -> SmallLM:
        """Load a saved LM; raises CheckpointError (a ValueError) for a missing or corrupt file."""
        path = Path(path)
        state, meta = load_checkpoint(path)
        tok_path = path.with_suffix(".tokenizer.json")
        if not tok_path.is_file():
            raise CheckpointError(f"tokenizer file {tok_path} is missing")
        tokenizer = Tokenizer.from_str(tok_path.read_text(encoding="utf-8"))
        config = LMConfig(**meta["config"])
        gpt = build_gpt2(tokenizer, config)
        gpt.load_state_dict(state["model"])
        return cls(tokenizer, gpt, config)

    # ---- encoding ----
    def word_ids(self, words: Sequence[str]) -> list[list[int]]:
        missing = [w for w in dict.fromkeys(words) if w not in self._word_cache]
        if missing:
            for w, enc in zip(missing, self.tokenizer.encode_batch([" " + w for w in missing]), strict=False):
                self._word_cache[w] = enc.ids
        return [self._word_cache[w] for w in words]

    def turns_ids(self, turns: Sequence[Turn]) -> tuple[list[int], np.ndarray]:
        """Token ids of tagged turns and ``[L]`` owner word index per token (-1 for tags)."""
        ids: list[int] = []
        owner: list[int] = []
        word = 0
        for turn in turns:
            tag = self.tokenizer.encode(f"\n{turn.role.capitalize()}:").ids
            ids += tag
            owner += [-1] * len(tag)
            for piece in self.word_ids(turn.words):
                ids += piece
                owner += [word] * len(piece)
                word += 1
        return ids, np.asarray(owner, dtype=np.int64)

    # ---- scoring ----
    @torch.no_grad()
    def token_nll(self, ids: Sequence[int]) -> np.ndarray:
        """``[L]`` NLL (nats) of each token given EOS and the preceding ones (strided windows)."""
        seq = torch.tensor([self.eos, *ids], dtype=torch.long)
        n, width = len(ids), self.config.n_positions
        out = np.zeros(n, dtype=np.float64)
        stride = width // 2
        start = 0
        while True:
            chunk = seq[start : start + width]
            logits = self.model(input_ids=chunk[None]).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="none").numpy()
            first = 0 if start == 0 else width - stride - 1
            out[start + first : start + len(nll)] = nll[first:]
            if start + width >= len(seq):
                return out
            start += stride

    def word_nll(self, turns: Sequence[Turn]) -> np.ndarray:
        """``[N]`` self-information of each word: the summed NLL of its tokens in context."""
        ids, owner = self.turns_ids(turns)
        nll = self.token_nll(ids)
        n_words = sum(len(t.words) for t in turns)
        keep = owner >= 0
        return np.bincount(owner[keep], weights=nll[keep], minlength=n_words)

    @torch.no_grad()
    def target_nll(
        self,
        contexts: Sequence[Sequence[Turn]],
        targets: Sequence[Turn],
        batch_size: int = 8,
        cache_weights: Sequence[float] = (0.0,),
    ) -> np.ndarray:
        """``[C, W, 2]`` mean NLL per token of turn t and of turns t..t+2, for each context and each
        unigram-cache weight in ``cache_weights`` (0 = the LM alone; see `cache_nll`).

        Contexts are left-truncated to fit ``n_positions`` together with the (capped) target.
        """
        tgt_ids = self.turns_ids(targets)[0][: self.config.target_tokens]
        first_turn = np.arange(len(tgt_ids)) < len(self.turns_ids(targets[:1])[0])
        room = self.config.n_positions - 1 - len(tgt_ids)
        ctx_ids = [self.turns_ids(c)[0] for c in contexts]
        seqs = [[self.eos, *ids[max(0, len(ids) - room) :]] for ids in ctx_ids]
        order = np.argsort([len(s) for s in seqs])
        out = np.zeros((len(contexts), len(cache_weights), 2))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            rows = [seqs[i] + tgt_ids for i in idx]
            width = max(len(r) for r in rows)
            batch = torch.full((len(rows), width), self.eos, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                batch[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            logp = torch.log_softmax(self.model(input_ids=batch, attention_mask=mask).logits.float(), -1)
            for j, i in enumerate(idx):
                ctx_len = len(seqs[i])
                pos = torch.arange(ctx_len - 1, ctx_len - 1 + len(tgt_ids))
                p_model = logp[j, pos, torch.tensor(tgt_ids)].exp().numpy().astype(np.float64)
                for k, w in enumerate(cache_weights):
                    nll = cache_nll(p_model, seqs[i][1:], tgt_ids, w)
                    out[i, k] = (nll[first_turn].mean(), nll.mean())
        return out


def cache_nll(
    p_model: np.ndarray, history: Sequence[int], target: Sequence[int], weight: float
) -> np.ndarray:
    """``[T]`` NLL (nats) of each target token under a unigram cache model (Kuhn & De Mori 1990;
    the neural cache of Grave et al. 2017 with a flat kernel):
    ``p = (1 - w) * p_model + w * count(token in history) / len(history)``, where the history is
    the context tokens plus the target tokens already read. With an empty history the LM alone.
    """
    counts: dict[int, int] = {}
    for tok in history:
        counts[tok] = counts.get(tok, 0) + 1
    n = len(history)
    out = np.empty(len(target))
    for k, tok in enumerate(target):
        p = (
            p_model[k]
            if n == 0 or weight == 0.0
            else (1 - weight) * p_model[k] + weight * counts.get(tok, 0) / n
        )
        out[k] = -np.log(max(p, 1e-300))
        counts[tok] = counts.get(tok, 0) + 1
        n += 1
    return out


CACHE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def fit_cache_weight(judge: SmallLM, texts: Sequence[str], n: int = 150, seed: int = 0) -> dict:
    """Choose the judge's cache weight on its own training half: the grid weight with the lowest mean
    NLL of turns t..t+2 given the full context, over ``n`` seeded cuts of ``render_turns`` texts.

    Returns ``{"weight", "grid", "nll", "n"}``.
    """
    rng = np.random.default_rng(seed)
    dialogues = [d for d in map(_parse_rendered, texts) if len(d) >= 2]
    if not dialogues:
        raise ValueError("no dialogue of two or more turns to fit the judge's cache weight on")
    nll = []
    for i in rng.choice(len(dialogues), min(n, len(dialogues)), replace=False):
        turns = dialogues[i]
        cut = int(rng.integers(1, len(turns)))
        nll.append(judge.target_nll([turns[:cut]], turns[cut : cut + 3], cache_weights=CACHE_GRID)[0, :, 1])
    mean = np.mean(nll, axis=0)
    return {
        "weight": CACHE_GRID[int(np.argmin(mean))],
        "grid": list(CACHE_GRID),
        "nll": mean.tolist(),
        "n": len(nll),
    }
