"""The DreamerV3 world model: encoders, RSSM, decoders, reward and continue heads.

Batches follow the replay convention (CONTRIBUTING.md): every value is ``[B, T, ...]``,
row t holds obs_t, ``reward`` r_t received on arriving at obs_t, ``is_first``,
``is_terminal`` and ``action`` a_{t-1} (zeros when is_first).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from worldmodel.heads import ContinueHead, TwoHotHead
from worldmodel.nets import ConvDecoder, ConvEncoder, VectorDecoder, VectorEncoder
from worldmodel.presets import LossConfig, ModelConfig
from worldmodel.rssm import RSSM, State

OBS_KEYS = ("vector", "image")


class WorldModelInputError(ValueError):
    """An observation space or a batch does not fit the world model."""


class WorldModel(nn.Module):
    """Encoder(s) + RSSM + decoder(s) + reward and continue heads.

    Args:
        obs_space: ``{"vector": (D,)}`` and/or ``{"image": (64, 64, C)}``.
        action_dim: size A of the action vector (one-hot for discrete actions).
        model: network sizes; ``loss``: loss scales.
    """

    def __init__(
        self, obs_space: Mapping[str, tuple[int, ...]], action_dim: int, model: ModelConfig, loss: LossConfig
    ) -> None:
        super().__init__()
        unknown = set(obs_space) - set(OBS_KEYS)
        if unknown or not obs_space:
            raise WorldModelInputError(
                f"observation keys must be among {OBS_KEYS}, got {sorted(obs_space)}"
            )
        if "image" in obs_space and tuple(obs_space["image"][:2]) != (64, 64):
            raise WorldModelInputError(f"image observations must be (64, 64, C), got {obs_space['image']}")
        self.obs_space = {k: tuple(v) for k, v in obs_space.items()}
        self.loss_cfg = loss
        m = model
        self.encoders = nn.ModuleDict()
        if "vector" in obs_space:
            self.encoders["vector"] = VectorEncoder(obs_space["vector"][0], m.units, m.enc_layers)
        if "image" in obs_space:
            self.encoders["image"] = ConvEncoder(obs_space["image"][2], m.cnn_depth)
        embed_dim = sum(e.out_dim for e in self.encoders.values())
        self.rssm = RSSM(embed_dim, action_dim, m.deter, m.stoch, m.classes, m.hidden, m.unimix, m.gru_blocks)
        feat = self.rssm.feat_dim
        self.decoders = nn.ModuleDict()
        if "vector" in obs_space:
            self.decoders["vector"] = VectorDecoder(feat, obs_space["vector"][0], m.units, m.enc_layers)
        if "image" in obs_space:
            self.decoders["image"] = ConvDecoder(feat, obs_space["image"][2], m.cnn_depth)
        self.reward = TwoHotHead(feat, m.units, m.head_layers, m.bins)
        self.cont = ContinueHead(feat, m.units, m.head_layers)

    def encode(self, obs: Mapping[str, Tensor]) -> Tensor:
        """Concatenated embeddings: obs values ``[*lead, ...]`` -> ``[*lead, E]``."""
        return torch.cat([enc(obs[k]) for k, enc in self.encoders.items()], -1)

    def loss(self, batch: Mapping[str, Tensor], state: State | None = None) -> tuple[Tensor, State, dict]:
        """World-model loss on a replayed batch.

        Args:
            batch: ``[B, T, ...]`` tensors: the observation keys, ``action`` [B, T, A],
                ``reward`` [B, T], ``is_first`` [B, T], ``is_terminal`` [B, T].
            state: RSSM state ``[B, ...]`` before step 0 (default: initial state).
        Returns:
            the scalar loss, the posterior states ``[B, T, ...]`` and float metrics.
        """
        cfg = self.loss_cfg
        embed = self.encode(batch)
        post, prior = self.rssm.observe(embed, batch["action"], batch["is_first"], state)
        feat = self.rssm.feat(post)
        losses = {f"recon_{k}": dec.loss(feat, batch[k]) for k, dec in self.decoders.items()}
        losses["reward"] = self.reward.loss(feat, batch["reward"])
        losses["cont"] = self.cont.loss(feat, 1.0 - batch["is_terminal"].float())
        kl, kl_metrics = self.rssm.kl_loss(post, prior, cfg.free_nats, cfg.dyn, cfg.rep)
        recon = sum(v for k, v in losses.items() if k.startswith("recon_"))
        total = cfg.recon * recon + cfg.reward * losses["reward"] + cfg.cont * losses["cont"] + kl
        metrics = {f"loss/{k}": v.mean().item() for k, v in losses.items()}
        metrics.update({f"loss/{k}": v.mean().item() for k, v in kl_metrics.items()})
        metrics["loss/model"] = total.mean().item()
        return total.mean(), post, metrics
