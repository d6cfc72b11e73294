"""Recurrent state-space model (RSSM) with categorical latents, as in DreamerV3.

State of one step: ``deter`` h_t [B, D] (GRU), ``stoch`` z_t [B, S, C] (one-hot
samples of S categoricals with C classes each), ``logits`` [B, S, C] (unimixed
log-probabilities z_t was sampled from). The model is

    h_t = f(h_{t-1}, z_{t-1}, a_{t-1})        (BlockGRU)
    prior     p(z_t | h_t)                      (img_step)
    posterior q(z_t | h_t, e_t)                 (obs_step, e_t = encoder embedding)

It is agnostic to the observation encoder and the action embedding: anything that
produces an ``[B, E]`` embedding and ``[B, A]`` float actions works.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.math import kl_balance, unimix_logits

State = dict[str, Tensor]


def linear_norm_act(inp: int, out: int) -> nn.Sequential:
    """``Linear(no bias) -> LayerNorm -> SiLU``, the DreamerV3 building block."""
    return nn.Sequential(nn.Linear(inp, out, bias=False), nn.LayerNorm(out), nn.SiLU())


class BlockGRU(nn.Module):
    """GRU cell with LayerNorm on the gate pre-activations, split into ``blocks`` groups.

    With ``blocks=1`` this is the LayerNorm GRU of DreamerV3 (2023); with more blocks it
    is the Nature version's block-diagonal GRU: each block of the hidden state sees the
    whole input but only its own slice of the previous state, which cuts the recurrent
    weights by a factor ``blocks``. The update gate is biased towards keeping the
    state (``sigmoid(u - 1)``).

    Shapes: ``x [B, I]``, ``h [B, D]`` -> ``[B, D]``.
    """

    def __init__(self, inp: int, deter: int, blocks: int = 1) -> None:
        super().__init__()
        if deter % blocks:
            raise ValueError(f"deter={deter} is not divisible by gru_blocks={blocks}")
        self.blocks, self.size = blocks, deter // blocks
        fan_in = inp + self.size
        self.weight = nn.Parameter(torch.empty(blocks, fan_in, 3 * self.size))
        nn.init.uniform_(self.weight, -(fan_in**-0.5), fan_in**-0.5)
        self.norm = nn.LayerNorm(3 * self.size)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        batch = h.shape[0]
        hb = h.reshape(batch, self.blocks, self.size)
        xb = x.unsqueeze(1).expand(batch, self.blocks, x.shape[-1])
        gates = torch.einsum("bgi,gio->bgo", torch.cat([xb, hb], -1), self.weight)
        reset, cand, update = self.norm(gates).chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)
        return (update * cand + (1 - update) * hb).reshape(batch, -1)


class RSSM(nn.Module):
    """Categorical RSSM (DreamerV3).

    Args:
        embed_dim: size E of the observation embedding.
        action_dim: size A of the (one-hot or continuous) action vector.
        deter: size D of the GRU state.
        stoch: number S of categorical latents.
        classes: number C of classes per latent.
        hidden: width of the input/output layers.
        unimix: uniform mixture on the latent categoricals (0.01 = 1%).
        gru_blocks: 1 = LayerNorm GRU (2023); >1 = block GRU (Nature, 8).
        learned_initial: start from ``tanh(param)`` instead of zeros.
    """

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter: int = 512,
        stoch: int = 32,
        classes: int = 32,
        hidden: int = 512,
        unimix: float = 0.01,
        gru_blocks: int = 1,
        learned_initial: bool = True,
    ) -> None:
        super().__init__()
        self.embed_dim, self.action_dim = embed_dim, action_dim
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.feat_dim = deter + stoch * classes
        self.img_in = linear_norm_act(stoch * classes + action_dim, hidden)
        self.gru = BlockGRU(hidden, deter, gru_blocks)
        self.img_out = nn.Sequential(linear_norm_act(deter, hidden), nn.Linear(hidden, stoch * classes))
        self.obs_out = nn.Sequential(
            linear_norm_act(deter + embed_dim, hidden), nn.Linear(hidden, stoch * classes)
        )
        self.init_deter = nn.Parameter(torch.zeros(deter), requires_grad=learned_initial)

    # ----------------------------------------------------------------- helpers
    def _dist_logits(self, raw: Tensor) -> Tensor:
        """``[B, S*C]`` raw outputs -> unimixed log-probabilities ``[B, S, C]`` (float32 under autocast)."""
        return unimix_logits(raw.float().reshape(*raw.shape[:-1], self.stoch, self.classes), self.unimix)

    @staticmethod
    def sample(logits: Tensor) -> Tensor:
        """One-hot sample with straight-through gradients.

        ``logits [..., S, C]`` are normalised log-probabilities (as the RSSM stores them);
        returns ``[..., S, C]``. Sampling is by inverse CDF (one uniform per latent): the
        class is the number of CDF entries below the uniform, found by binary search and
        written straight into a float one-hot (no bool or int64 temporaries: this runs
        once per imagined step on ``[N, S, C]``).
        """
        probs = logits.exp()
        u = torch.rand(probs.shape[:-1], device=probs.device, dtype=probs.dtype).unsqueeze(-1)
        index = torch.searchsorted(probs.cumsum(-1), u).clamp_(max=probs.shape[-1] - 1)
        onehot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
        if probs.requires_grad:
            onehot = onehot + probs - probs.detach()
        return onehot

    def feat(self, state: State) -> Tensor:
        """Model features ``[..., D + S*C]``: deter concatenated with the flat stoch."""
        stoch = state["stoch"]
        return torch.cat([state["deter"], stoch.reshape(*stoch.shape[:-2], -1)], -1)

    # ----------------------------------------------------------------- steps
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The state before the first step: ``deter [B, D]``, ``stoch``/``logits`` ``[B, S, C]``.

        deter is ``tanh(learned vector)`` (zeros when not learned), stoch the mode of the
        prior at that deter, so it is deterministic and differentiable.
        """
        device = device if device is not None else self.init_deter.device
        deter = torch.tanh(self.init_deter).to(device).expand(batch_size, self.deter)
        logits = self._dist_logits(self.img_out(deter))
        stoch = F.one_hot(logits.argmax(-1), self.classes).to(deter.dtype)
        return {"deter": deter, "stoch": stoch, "logits": logits}

    def _deter_step(self, state: State, prev_action: Tensor) -> Tensor:
        flat = state["stoch"].reshape(prev_action.shape[0], -1)
        return self.gru(self.img_in(torch.cat([flat, prev_action], -1)), state["deter"])

    def img_step(self, state: State, prev_action: Tensor) -> State:
        """One prior step: ``state [B, ...]``, ``prev_action [B, A]`` -> prior state ``[B, ...]``."""
        return self._prior(self._deter_step(state, prev_action))

    def _prior(self, deter: Tensor) -> State:
        """Prior p(z | h) for ``deter [..., D]`` -> a state of ``[..., ...]``."""
        logits = self._dist_logits(self.img_out(deter))
        return {"deter": deter, "stoch": self.sample(logits), "logits": logits}

    def obs_step(
        self, state: State, prev_action: Tensor, embed: Tensor, is_first: Tensor
    ) -> tuple[State, State]:
        """One filtering step. Returns ``(post, prior)``, each a state of ``[B, ...]``.

        ``prev_action [B, A]`` is a_{t-1}, ``embed [B, E]`` is e_t, ``is_first [B]`` (bool)
        resets the state to `initial_state` and zeroes a_{t-1} for those rows.
        """
        post = self._post_step(state, prev_action, embed, is_first)
        return post, self._prior(post["deter"])

    def _post_step(self, state: State, prev_action: Tensor, embed: Tensor, is_first: Tensor) -> State:
        first = is_first.bool()
        if bool(first.any()):
            init = self.initial_state(embed.shape[0], embed.device)
            state = {
                k: torch.where(first.view(-1, *([1] * (v.dim() - 1))), init[k], v) for k, v in state.items()
            }
            prev_action = prev_action * (~first).to(prev_action.dtype).unsqueeze(-1)
        deter = self._deter_step(state, prev_action)
        logits = self._dist_logits(self.obs_out(torch.cat([deter, embed], -1)))
        return {"deter": deter, "stoch": self.sample(logits), "logits": logits}

    # ----------------------------------------------------------------- sequences
    def observe(
        self, embed: Tensor, action: Tensor, is_first: Tensor, state: State | None = None
    ) -> tuple[State, State]:
        """Filter a whole sequence.

        Args:
            embed: ``[B, T, E]`` observation embeddings e_t.
            action: ``[B, T, A]``, row t is the action taken *before* step t (a_{t-1}).
            is_first: ``[B, T]`` bool; resets the state (and zeroes a_{t-1}) to initial.
            state: state ``[B, ...]`` before step 0 (default: `initial_state`).
        Returns:
            ``(post, prior)``: dicts of ``[B, T, ...]``.
        """
        batch, length = embed.shape[:2]
        if action.shape[:2] != (batch, length) or is_first.shape != (batch, length):
            raise ValueError(
                f"observe expects embed [B, T, E], action [B, T, A], is_first [B, T] with the same B, T; "
                f"got {tuple(embed.shape)}, {tuple(action.shape)}, {tuple(is_first.shape)}"
            )
        if state is None:
            state = self.initial_state(batch, embed.device)
        posts = []
        for t in range(length):
            state = self._post_step(state, action[:, t], embed[:, t], is_first[:, t])
            posts.append(state)
        post = _stack(posts)
        return post, self._prior(post["deter"])  # the prior does not feed back: one batched call

    def imagine(
        self, start: State, policy: Callable[[Tensor], Tensor] | Tensor, horizon: int
    ) -> tuple[State, Tensor]:
        """Roll the prior forward from ``start`` (a state of ``[N, ...]``).

        ``policy`` is a callable ``feat [N, F] -> action [N, A]`` or a tensor of actions
        ``[N, H, A]``. Returns the states ``[N, H+1, ...]`` (index 0 is ``start``) and the
        actions ``[N, H, A]``, where ``actions[:, t]`` was taken in ``states[:, t]``.
        Only the prior (`img_step`) is used.
        """
        if isinstance(policy, Tensor) and policy.shape[1] < horizon:
            raise ValueError(f"imagine got {policy.shape[1]} actions for horizon {horizon}")
        state = {k: start[k] for k in ("deter", "stoch", "logits")}
        states, actions = [state], []
        for t in range(horizon):
            action = policy[:, t] if isinstance(policy, Tensor) else policy(self.feat(state))
            state = self.img_step(state, action)
            states.append(state)
            actions.append(action)
        return _stack(states), torch.stack(actions, 1)

    def kl_loss(
        self,
        post: State,
        prior: State,
        free: float = 1.0,
        dyn_scale: float = 0.5,
        rep_scale: float = 0.1,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """KL balancing with free bits (see `worldmodel.math.kl_balance`).

        Returns the loss ``[B, T]`` and metrics ``dyn``, ``rep``, ``kl`` of ``[B, T]``.
        """
        return kl_balance(post["logits"], prior["logits"], free, dyn_scale, rep_scale)


def _stack(states: list[State], dim: int = 1) -> State:
    return {k: torch.stack([s[k] for s in states], dim) for k in states[0]}
