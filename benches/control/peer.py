"""Side by side with the peer (sheeprl 0.8.4 DreamerV3) on the same task, size and ratio.

    python -m benches.control.peer --steps 640 --learning-starts 512 --replay-ratio 0.5

Runs, in this one invocation and one after the other with the same thread count:

1. sheeprl (from its own virtual environment, ``--sheeprl`` or $SHEEPRL, default
   /tmp/venv_sheep/bin/sheeprl) on gym CartPole-v1, DreamerV3-XS, vector observations,
   batch 16 x 64, ``replay_ratio`` gradient steps per policy step;
2. this project's runner with the ``xs`` preset and the same batch, ``train_ratio =
   replay_ratio * 16 * 64`` and ``prefill = learning_starts``.

Both rates are measured over the learning phase only (after learning starts): env
steps/s from the logged wall times, gradient updates/s from each tool's own counter
(sheeprl's ``Time/sps_train``, our ``updates_per_s``). Then it counts the FLOPs of one
of our updates (``torch.utils.flop_counter.FlopCounterMode``) and measures this CPU's
fp32 matmul throughput at the same thread count, and reports the fraction of that
limit our updates reach. Writes ``benches/results/control_peer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from worldmodel.agent import Agent
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import keep_freed_memory, read_metrics
from worldmodel.train import build_configs, make_envs, obs_shapes, train

RESULTS = Path(__file__).resolve().parents[1] / "results"


def sheeprl_command(sheeprl: str, steps: int, learning_starts: int, replay_ratio: float, log_every: int,
                    threads: int) -> list[str]:
    """sheeprl DreamerV3-XS on gym CartPole-v1 with vector observations, batch 16 x 64, as in
    ../shared/docs/environment.md (no checkpoints, a buffer that holds every step)."""
    return [
        sheeprl, "exp=dreamer_v3", "env=gym", "env.id=CartPole-v1", "algo=dreamer_v3_XS",
        "algo.cnn_keys.encoder=[]", "algo.cnn_keys.decoder=[]", "algo.mlp_keys.encoder=[state]",
        "algo.mlp_keys.decoder=[state]", f"algo.total_steps={steps}",
        f"algo.learning_starts={learning_starts}", "algo.per_rank_batch_size=16",
        "algo.per_rank_sequence_length=64", f"algo.replay_ratio={replay_ratio}", "algo.run_test=False",
        "env.num_envs=1", "env.capture_video=False", "env.sync_env=True",
        f"buffer.size={max(steps, 10_000)}", "buffer.checkpoint=False",
        f"checkpoint.every={10 * max(steps, 10_000)}", "checkpoint.save_last=False",
        f"metric.log_every={log_every}", "+metric.logger.flush_secs=5", "fabric.accelerator=cpu",
        # sheeprl sets OMP_NUM_THREADS from its own num_threads (default 1), over the environment
        f"num_threads={threads}", "seed=0",
    ]


def sheeprl_scalars(workdir: Path, tag: str) -> list[Any]:
    """The TensorBoard events of ``tag`` in sheeprl's newest run under ``workdir`` ([] if none yet)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(workdir.glob("logs/runs/**/events.out.tfevents.*"))
    if not files:
        return []
    acc = EventAccumulator(str(files[-1]))
    acc.Reload()
    return acc.Scalars(tag) if tag in acc.Tags().get("scalars", []) else []


def run_sheeprl(sheeprl: str, steps: int, learning_starts: int, replay_ratio: float, threads: int,
                workdir: Path) -> dict[str, Any]:
    """Run sheeprl DreamerV3-XS on CartPole-v1 and read its TensorBoard scalars."""
    command = sheeprl_command(sheeprl, steps, learning_starts, replay_ratio,
                              max(1, (steps - learning_starts) // 2), threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    # Time/sps_train is logged at every log point of the learning phase: its wall times
    # give the env steps/s between the first and the last of them.
    points = sheeprl_scalars(workdir, "Time/sps_train")
    span = points[-1].wall_time - points[0].wall_time
    env_rate = (points[-1].step - points[0].step) / span if len(points) > 1 and span > 0 else None
    return {"updates_per_s": points[-1].value, "env_steps_per_s": env_rate, "wall_s": wall,
            "log_points": [(e.step, e.value) for e in points]}


def run_ours(
    steps: int, learning_starts: int, replay_ratio: float, threads: int, logdir: Path
) -> dict[str, Any]:
    """Our runner on the same task, size, batch and ratio."""
    run_cfg, agent_cfg = build_configs(
        [f"run.prefill={learning_starts}", f"run.log_every={steps - learning_starts}",
         f"run.checkpoint_every={steps}", f"run.threads={threads}", "batch_size=16", "batch_length=64"],
        env="gym:CartPole-v1", size="xs", steps=steps, seed=0, train_ratio=replay_ratio * 16 * 64,
    )
    start = time.perf_counter()
    result = train(run_cfg, agent_cfg, logdir)
    wall = time.perf_counter() - start
    last = [r for r in read_metrics(logdir) if "updates_per_s" in r][-1]
    return {"updates_per_s": last["updates_per_s"], "env_steps_per_s": last["fps"], "wall_s": wall,
            "updates": result["updates"], "last_return": result["last_return"]}


def update_flops(threads: int) -> tuple[int, float]:
    """FLOPs of one xs update (batch 16 x 64, CartPole shapes) and its measured time (s)."""
    torch.set_num_threads(threads)
    keep_freed_memory()  # as the training runner does
    run_cfg, agent_cfg = build_configs(["batch_size=16", "batch_length=64"], size="xs")
    with make_envs(run_cfg) as envs:
        agent = Agent(obs_shapes(envs), envs.action_space, agent_cfg)
    b, t = agent_cfg.batch_size, agent_cfg.batch_length
    batch = {
        "vector": torch.randn(b, t, 4), "reward": torch.ones(b, t),
        "action": torch.nn.functional.one_hot(torch.randint(0, 2, (b, t)), 2).float(),
        "is_first": torch.zeros(b, t, dtype=torch.bool), "is_terminal": torch.zeros(b, t, dtype=torch.bool),
    }
    agent.train(batch)
    counter = FlopCounterMode(display=False)
    with counter:
        agent.train(batch)
    start = time.perf_counter()
    agent.train(batch)
    return counter.get_total_flops(), time.perf_counter() - start


def matmul_flops_per_s(
    threads: int, shape: tuple[int, int, int] = (1024, 1280, 256), repeats: int = 20
) -> float:
    """Measured fp32 matmul throughput (FLOP/s) at ``threads`` threads."""
    torch.set_num_threads(threads)
    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * m * k * n * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=640)
    parser.add_argument("--learning-starts", type=int, default=512)
    parser.add_argument("--replay-ratio", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sheeprl", default=os.environ.get("SHEEPRL", "/tmp/venv_sheep/bin/sheeprl"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        peer = run_sheeprl(args.sheeprl, args.steps, args.learning_starts, args.replay_ratio, args.threads,
                           Path(tmp))
        ours = run_ours(args.steps, args.learning_starts, args.replay_ratio, args.threads, Path(tmp) / "ours")
    flops, seconds = update_flops(args.threads)
    limit = matmul_flops_per_s(args.threads)
    out = {
        "task": "gym:CartPole-v1", "size": "xs", "batch": "16x64", "replay_ratio": args.replay_ratio,
        "train_ratio": args.replay_ratio * 1024, "steps": args.steps, "learning_starts": args.learning_starts,
        "threads": args.threads, "sheeprl": peer, "ours": ours,
        "ratio_updates_per_s": ours["updates_per_s"] / peer["updates_per_s"],
        "ratio_env_steps_per_s": (
            ours["env_steps_per_s"] / peer["env_steps_per_s"] if peer["env_steps_per_s"] else None
        ),
        "update_gflop": flops / 1e9, "update_s_isolated": seconds,
        "matmul_gflop_per_s": limit / 1e9,
        "fraction_of_matmul_limit": (flops / seconds) / limit,
    }
    atomic_write_json(RESULTS / "control_peer.json", out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
