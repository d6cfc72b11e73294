"""Training losses of the dialogue world model (see `dialogue.model` for the heads).

- ``kl``: RSSM KL balancing with free bits (posterior vs prior of each step);
- ``embed``: ``2 - cos(prior prediction, u_t) - cos(posterior reconstruction, u_t)``;
- ``infonce``: in-batch InfoNCE of the prior's prediction of u_t against other user turns
  (with ``loss.nce_other_windows``: only turns of other windows, as in the dev retrieval);
- ``response``: ``1 - cos(response head, a_t)`` (the policy used in imagination);
- ``quality``: BCE of the 4 quality heads against the labels of `dialogue.labels`;
- ``value``: squared error of the value head against the discounted future reward;
- ``decoder``: mean token NLL of user turns (from the prior) and responses (from the posterior).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dialogue.bpe import PAD_ID
from dialogue.decoder import ROLE_IDS
from dialogue.outputs import DialogueLosses


def _flat(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``[B, T, ...]`` state -> ``[B*T, ...]``."""
    return {k: v.reshape(-1, *v.shape[2:]) for k, v in state.items()}


def info_nce(pred: Tensor, target: Tensor, temperature: float, groups: Tensor | None = None) -> Tensor:
    """In-batch InfoNCE. ``pred``, ``target`` ``[M, E]`` L2-normalised -> scalar.

    Row i's positive is target i; other rows are negatives, except near-duplicates of
    target i (cosine > 0.999, e.g. two "continue" turns) and, when ``groups [M]`` is given,
    rows of the same group as row i (other turns of the same dialogue window), which are
    masked out.
    """
    logits = pred @ target.T / temperature
    masked = target @ target.T > 0.999
    if groups is not None:
        masked |= groups[:, None] == groups[None, :]
    masked &= ~torch.eye(len(target), dtype=torch.bool, device=target.device)
    logits = logits.masked_fill(masked, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))


def world_model_losses(model: Any, batch: Mapping[str, Tensor]) -> DialogueLosses:
    """Training losses on a batch of B dialogue windows of T steps.

    ``batch``: ``user_emb``/``assistant_emb`` ``[B, T, E]``; ``valid``, ``has_response``,
    ``is_first`` ``[B, T]`` bool; ``user_ids``/``assistant_ids`` ``[B, T, L]`` (BPE, 0-padded);
    ``quality``/``quality_mask`` ``[B, T, 4]``; ``value_target`` ``[B, T]``.
    """
    cfg, b = model.config.loss, batch
    valid, has_resp = b["valid"], b["has_response"]
    # Row t: user turn u_t observed, action row t = a_{t-1} (zeros at t = 0).
    action = model.act_proj(b["assistant_emb"])
    prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
    post, prior = model.rssm.observe(model.obs_proj(b["user_emb"]), prev_action, b["is_first"])
    kl, kl_metrics = model.rssm.kl_loss(post, prior, free=cfg.free_bits)
    feat_post, feat_prior = model.rssm.feat(post), model.rssm.feat(prior)
    # The prior after each response a_t (quality and value heads live on it).
    after = model.rssm.img_step(_flat(post), action.reshape(-1, action.shape[-1]))
    feat_after = model.rssm.feat(after).reshape(*action.shape[:2], -1)
    vmask, rmask = valid.float(), has_resp.float()

    def masked(x: Tensor, mask: Tensor) -> Tensor:
        return (x * mask).sum() / mask.sum().clamp_min(1)

    # Previous user turn and response of each row (zeros at t = 0), for the head's skip path.
    prev_user = torch.cat([torch.zeros_like(b["user_emb"][:, :1]), b["user_emb"][:, :-1]], 1)
    prev_resp = torch.cat(
        [torch.zeros_like(b["assistant_emb"][:, :1]), b["assistant_emb"][:, :-1]], 1
    )
    pred_user = model.user_prediction(feat_prior, prev_user, prev_resp)
    recon_user = model.user_prediction(feat_post, prev_user, prev_resp)
    pred_resp = F.normalize(model.response_head(feat_post), dim=-1)
    cos_pred = (pred_user * b["user_emb"]).sum(-1)
    cos_recon = (recon_user * b["user_emb"]).sum(-1)
    cos_resp = (pred_resp * b["assistant_emb"]).sum(-1)
    window = torch.arange(len(valid), device=valid.device)[:, None].expand_as(valid)
    groups = window[valid] if cfg.nce_other_windows else None
    nce = info_nce(pred_user[valid], b["user_emb"][valid], cfg.temperature, groups)
    quality_logits = model.quality_head(feat_after)
    bce = F.binary_cross_entropy_with_logits(quality_logits, b["quality"], reduction="none")
    qmask = b["quality_mask"].float()
    value = model.value_head(feat_after).squeeze(-1)
    user_nll, user_tokens = _decoder_nll(
        model.decoder, feat_prior[valid], "user", b["user_ids"][valid]
    )
    resp_nll, resp_tokens = _decoder_nll(
        model.decoder, feat_post[has_resp], "assistant", b["assistant_ids"][has_resp]
    )
    losses = {
        "kl": masked(kl, vmask),
        "embed": masked(2 - cos_pred - cos_recon, vmask),
        "infonce": nce,
        "response": masked(1 - cos_resp, rmask),
        "quality": (bce * qmask).sum() / qmask.sum().clamp_min(1),
        "value": masked((value - b["value_target"]) ** 2, rmask),
        "decoder": (user_nll + resp_nll) / (user_tokens + resp_tokens).clamp_min(1),
    }
    loss = sum(getattr(cfg, name) * term for name, term in losses.items())
    metrics = {f"loss/{k}": v.detach() for k, v in losses.items()}
    metrics["next_user_cos"] = masked(cos_pred, vmask).detach()
    metrics["user_ppl"] = torch.exp(user_nll / user_tokens.clamp_min(1)).detach()
    metrics["kl_value"] = masked(kl_metrics["kl"], vmask).detach()
    return DialogueLosses(loss=loss, metrics=metrics)


def _decoder_nll(decoder: Any, cond: Tensor, role: str, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Summed surprisal and token count of ``ids [M, L]`` decoded from ``cond [M, F]``."""
    length = int((ids != PAD_ID).sum(-1).max().item()) if len(ids) else 1
    ids = ids[:, : max(length, 1)]
    roles = torch.full((len(ids),), ROLE_IDS[role], dtype=torch.long, device=ids.device)
    surprisal = decoder.surprisal(cond, roles, ids)
    return surprisal.sum(), (ids != PAD_ID).sum()
