"""Why does (or doesn't) a dream-trained controller transfer? Checks of a saved V-M-C run.

    .venv/bin/python -m worldmodel.vmc.diagnose runs/vmc_take_cover/vmc.safetensors \
        --episodes 8 --out runs/vmc_diag/take_cover

On fresh random rollouts (seeds ``--seed`` onwards, never used for training):

* V: mean reconstruction error (squared error summed over pixels) of all frames and of the
  last ``k`` frames before each death (in take_cover: the fireball that kills), and a
  PNG of frames (top) over their reconstructions (bottom) near the first death;
* M: teacher-forced on whole episodes, the calibrated done probability at the death
  step vs. elsewhere, and how often it crosses the dream's threshold ``1 / (1 + w)``;
* the dream vs. the real game: survival of constant controllers (still, always left,
  always right) in M's dream at ``tau`` and in the real environment.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.checkpoint import atomic_write_json, load_checkpoint
from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.dream import dream_returns
from worldmodel.vmc.envs import make_vmc_env
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.pipeline import evaluate_real
from worldmodel.vmc.rollouts import collect
from worldmodel.vmc.vae import ConvVAE, frames_to_input

CONSTANT = {"still": 0.0, "left": -3.0, "right": 3.0}  # controller bias; tanh(3) = 0.995


@torch.no_grad()
def v_and_m_report(
    vae: ConvVAE, mdn: MDNRNN, data: list[dict[str, np.ndarray]], k: int = 5
) -> dict[str, Any]:
    """V's reconstruction error and M's done probability on ``collect``-style episodes that end
    in a death (``dones[-1] == 1``). Returns JSON-able numbers."""
    errors, last_errors, p_death, p_other, latents = [], [], [], [], []
    for episode in data:
        x = frames_to_input(torch.as_tensor(episode["frames"]))
        mu = vae.encode(x)[0]
        err = (x - vae.decode(mu)).pow(2).sum((1, 2, 3))
        errors.append(err)
        last_errors.append(err[-k:])
        done_logit = mdn(mu[None, :-1], torch.as_tensor(episode["actions"])[None])[4][0]
        prob = (done_logit - np.log(mdn.done_weight)).sigmoid()
        p_death.append(prob[-1])
        p_other.append(prob[:-k])
        latents.append(mu)
    threshold = 1.0 / (1.0 + mdn.done_weight)
    death, other = torch.stack(p_death), torch.cat(p_other)
    return {
        "episodes": len(data),
        "steps": [len(ep["actions"]) for ep in data],
        "v_recon_error": float(torch.cat(errors).mean()),
        f"v_recon_error_last_{k}": float(torch.cat(last_errors).mean()),
        "m_done_prob_at_death": float(death.mean()),
        f"m_done_prob_before_last_{k}": float(other.mean()),
        "m_threshold": threshold,
        "m_deaths_above_threshold": float((death > threshold).float().mean()),
        f"m_false_alarms_before_last_{k}": float((other > threshold).float().mean()),
        "_latents": latents,
    }


def constant_params(controller: LinearController, bias: float) -> torch.Tensor:
    """``[n]`` parameters of a controller that ignores its input and outputs ``tanh(bias)``."""
    params = torch.zeros(controller.num_params)
    params[-controller.out_dim :] = bias
    return params


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=77_000)
    parser.add_argument("--tau", type=float, default=1.15)
    parser.add_argument("--dream-rollouts", type=int, default=32)
    parser.add_argument("--out", required=True, help="writes <out>.json and <out>.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    state, meta = load_checkpoint(args.checkpoint)
    cfg = meta["config"]
    env = make_vmc_env(cfg["env"])
    vae = ConvVAE(cfg["z_dim"])
    vae.load_state_dict(state["vae"])
    mdn = MDNRNN(cfg["z_dim"], env.action_dim, cfg["hidden"], cfg["mixtures"], cfg["done_weight"])
    mdn.load_state_dict(state["mdn"])
    vae.eval(), mdn.eval()
    controller = LinearController(cfg["z_dim"] + cfg["hidden"], env.controller_dim)
    try:
        data = collect(env, args.episodes, env.max_steps, args.seed)
        report = v_and_m_report(vae, mdn, data)
        latents = report.pop("_latents")
        starts = torch.stack([mu[0] for mu in latents])
        starts = starts[torch.arange(args.dream_rollouts) % len(starts)]
        candidates = {name: constant_params(controller, bias) for name, bias in CONSTANT.items()}
        if "controller" in state:
            candidates["evolved"] = state["controller"]
        survival: dict[str, dict[str, float]] = {}
        for name, params in candidates.items():
            dream = (starts, env.action_map, env.max_steps, args.tau)
            dreamt = dream_returns(mdn, controller, params[None], *dream)
            real = evaluate_real(env, vae, mdn, controller, params, args.episodes, args.seed)
            survival[name] = {"dream": float(dreamt[0]), "real": float(np.mean(real))}
    finally:
        env.close()
    report.update(checkpoint=args.checkpoint, seed=args.seed, tau=args.tau, survival=survival)
    atomic_write_json(Path(args.out + ".json"), report)
    save_grid(vae, data[0]["frames"], Path(args.out + ".png"))
    print(json.dumps(report, indent=1))


@torch.no_grad()
def save_grid(vae: ConvVAE, frames: np.ndarray, path: Path, count: int = 8) -> None:
    """Frames ``[T, 64, 64, 3]`` evenly spaced over the last 40 (top) over V's reconstructions."""
    import cv2

    idx = np.linspace(max(0, len(frames) - 40), len(frames) - 1, count).astype(int)
    recon = vae.decode(vae.encode(frames_to_input(torch.as_tensor(frames[idx])))[0])
    bottom = (recon.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    grid = np.concatenate([np.concatenate(list(frames[idx]), 1), np.concatenate(list(bottom), 1)], 0)
    grid = cv2.resize(grid, (grid.shape[1] * 3, grid.shape[0] * 3), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), grid[:, :, ::-1])


if __name__ == "__main__":
    main()
