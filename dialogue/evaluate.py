"""Dev-set evaluation: next-user-turn retrieval and decoder perplexity.

Retrieval (R@1 of 10, MRR of 10): for every user turn u_t with t >= 1 (it follows an
assistant response), the world model's prior prediction is compared (cosine) with the true
turn and 9 negatives: user turns of *other* windows, drawn once with a fixed seed. The
trivial baselines use the embedding of the last turn before u_t (the response a_{t-1}) and
of the previous user turn u_{t-1} as the prediction.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dialogue.batching import StepData, embed_turns, make_batch
from dialogue.bpe import PAD_ID
from dialogue.decoder import ROLE_IDS
from dialogue.model import seeded


def retrieval_metrics(pred: Tensor, cands: Tensor) -> dict[str, float]:
    """``pred [M, E]``, ``cands [M, K, E]`` with the true item at index 0 -> R@1 and MRR."""
    scores = torch.einsum("me,mke->mk", F.normalize(pred, dim=-1), F.normalize(cands, dim=-1))
    rank = (scores[:, 1:] >= scores[:, :1]).sum(-1)  # ties count against the model
    return {"r_at_1": float((rank == 0).float().mean()), "mrr": float((1.0 / (rank + 1)).mean())}


@torch.no_grad()
def evaluate(
    model: Any, data: StepData, batch_size: int = 32, negatives: int = 9, seed: int = 0
) -> dict[str, float]:
    """Dev metrics of ``model`` on ``data`` (see the module docstring). Returns floats."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    preds, targets, last_turn, prev_user, owner = [], [], [], [], []
    nll = {"user": 0.0, "assistant": 0.0}
    tokens = {"user": 0, "assistant": 0}
    with seeded(seed):
        for start in range(0, len(data), batch_size):
            chunk = data.examples[start : start + batch_size]
            b = {k: v.to(device) for k, v in make_batch(chunk, data, model.encoder).items()}
            if "turn_input_ids" in b:  # a fine-tuned encoder embeds the turns itself
                b.update(embed_turns(model.encoder, b))
            action = model.act_proj(b["assistant_emb"])
            prev = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
            post, prior = model.rssm.observe(model.obs_proj(b["user_emb"]), prev, b["is_first"])
            feat_prior, feat_post = model.rssm.feat(prior), model.rssm.feat(post)
            follows = b["valid"][:, 1:] & b["has_response"][:, :-1]
            last, prev_u = b["assistant_emb"][:, :-1][follows], b["user_emb"][:, :-1][follows]
            preds.append(model.user_prediction(feat_prior[:, 1:][follows], prev_u, last).cpu())
            last_turn.append(last.cpu())
            prev_user.append(prev_u.cpu())
            targets.append(b["user_emb"][:, 1:][follows].cpu())
            owner.append((torch.arange(len(chunk)) + start)[:, None].expand_as(follows)[follows.cpu()])
            for role, feat, mask, ids in (
                ("user", feat_prior, b["valid"], b["user_ids"]),
                ("assistant", feat_post, b["has_response"], b["assistant_ids"]),
            ):
                roles = torch.full((int(mask.sum()),), ROLE_IDS[role], dtype=torch.long, device=device)
                nll[role] += float(model.decoder.surprisal(feat[mask], roles, ids[mask]).sum())
                tokens[role] += int((ids[mask] != PAD_ID).sum())
    pred, target, owner_t = torch.cat(preds), torch.cat(targets), torch.cat(owner)
    gen = torch.Generator().manual_seed(seed)
    neg_index = torch.empty(len(target), negatives, dtype=torch.long)
    for i in range(len(target)):
        pool = (owner_t != owner_t[i]).nonzero().squeeze(1)
        if not len(pool):
            raise ValueError(
                "retrieval evaluation needs user turns from at least two dialogue windows"
            )
        neg_index[i] = pool[torch.randint(len(pool), (negatives,), generator=gen)]
    cands = torch.cat([target[:, None], target[neg_index]], 1)
    out: dict[str, float] = {"dev/pairs": float(len(target))}
    for name, guess in (
        ("model", pred),
        ("baseline_last_turn", torch.cat(last_turn)),
        ("baseline_prev_user", torch.cat(prev_user)),
    ):
        for key, value in retrieval_metrics(guess, cands).items():
            out[f"dev/{name}_{key}"] = value
    out["dev/model_cosine"] = float((pred * target).sum(-1).mean())
    for role in nll:
        out[f"dev/{role}_ppl"] = math.exp(nll[role] / max(tokens[role], 1))
    model.train(was_training)
    return out
