"""Speed of the worldmodel core per size preset, on this CPU.

For each preset: ``Agent.train`` updates per second on a vector-observation batch
(CartPole shapes: 4 observation dims, 2 actions, batch 16 x 64, imagination from all
1,024 posterior states over 15 steps) and imagined steps per second (prior rollout
under the actor, no gradient). The peer, measured in the same run, is this CPU's
matmul throughput at the update's precision: FLOPs of one update are counted with torch's
FlopCounterMode, so ``peak_fraction`` = achieved GFLOP/s / matmul GFLOP/s (1.0 would
be the machine's limit). The update's own matmuls, each timed alone at its shape
(benches/matmul_limit.py), give ``shape_limit_fraction`` (the best ``peak_fraction`` these
shapes allow) and ``matmul_share`` (the share of the update they would take at that speed).
``--precision float32 bfloat16`` times both and gives each bf16
row its speed-up over float32 in the same run.

    python -m benches.bench_worldmodel [--sizes xs s] [--updates 3] [--threads 1] [--precision ...]

Prints JSON and writes benches/results/worldmodel.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benches.matmul_limit import MatmulRecorder, alone_seconds
from worldmodel import ActionSpec, Agent, dreamer_config
from worldmodel.agent import PRECISIONS
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import keep_freed_memory

RESULTS = Path(__file__).resolve().parent / "results" / "worldmodel.json"
OBS_DIM, ACTIONS = 4, 2


def matmul_gflops(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Matmul throughput of this CPU at ``dtype`` (the peer of every number below)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def random_batch(batch: int, length: int) -> dict[str, torch.Tensor]:
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "vector": torch.randn(batch, length, OBS_DIM),
        "action": F.one_hot(torch.randint(0, ACTIONS, (batch, length)), ACTIONS).float(),
        "reward": torch.randint(0, 2, (batch, length)).float(),
        "is_first": is_first,
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }


def bench_size(preset: str, updates: int, overrides: list[str]) -> dict[str, float | str]:
    torch.manual_seed(0)
    cfg = dreamer_config(preset, overrides)
    agent = Agent({"vector": (OBS_DIM,)}, ActionSpec(True, ACTIONS), cfg)
    batch = random_batch(cfg.batch_size, cfg.batch_length)
    with FlopCounterMode(display=False) as counter, MatmulRecorder() as recorder:
        agent.train(batch)  # also the warm-up
    start = time.perf_counter()
    for _ in range(updates):
        agent.train(batch)
    per_update = (time.perf_counter() - start) / updates

    post, _ = agent.wm.rssm.observe(agent.wm.encode(batch), batch["action"], batch["is_first"])
    starts = {k: v.detach().flatten(0, 1) for k, v in post.items()}
    cont = torch.ones(starts["deter"].shape[0])
    horizon = cfg.behavior.horizon
    agent.ac.imagine(agent.wm, starts, cont, horizon)
    start = time.perf_counter()
    agent.ac.imagine(agent.wm, starts, cont, horizon)
    imagine_time = time.perf_counter() - start

    params = sum(p.numel() for p in agent.wm.parameters()) + sum(p.numel() for p in agent.ac.parameters())
    gflop = counter.get_total_flops() / 1e9
    matmul_gflop, matmul_s = alone_seconds(recorder.calls)
    return {
        "preset": preset,
        "precision": cfg.precision,
        "batch": f"{cfg.batch_size}x{cfg.batch_length}",
        "params_m": round(params / 1e6, 2),
        "updates_per_s": round(1 / per_update, 4),
        "imagined_steps_per_s": round(cont.numel() * horizon / imagine_time, 1),
        "gflop_per_update": round(gflop, 1),
        "achieved_gflops": round(gflop / per_update, 1),
        # the update's matmuls, each timed alone at its shape: their GFLOP/s is the update's limit
        "matmul_alone_s": round(matmul_s, 4),
        "matmul_alone_gflops": round(matmul_gflop / matmul_s, 1),
        "matmul_share": round(matmul_s / per_update, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1m", "xs", "s", "12m"])
    parser.add_argument("--updates", type=int, default=2, help="timed updates per size (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["float32"],
        choices=PRECISIONS,
        help="update precisions to time; with both, each bf16 row gets its speed-up over float32",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides key=value for every size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the training runner does
    peers = {p: matmul_gflops(dtype=getattr(torch, p)) for p in args.precision}
    rows = []
    for size in args.sizes:
        by_precision = {}
        for precision in args.precision:
            row = bench_size(size, args.updates, [*args.overrides, f"precision={precision}"])
            row["peak_fraction"] = round(row["achieved_gflops"] / peers[precision], 3)
            row["shape_limit_fraction"] = round(row["matmul_alone_gflops"] / peers[precision], 3)
            by_precision[precision] = row
        if len(by_precision) == 2:
            ratio = by_precision["bfloat16"]["updates_per_s"] / by_precision["float32"]["updates_per_s"]
            by_precision["bfloat16"]["speedup_vs_float32"] = round(ratio, 3)
        rows += by_precision.values()
    result = {
        "threads": args.threads,
        "obs": "vector(4)",
        "actions": ACTIONS,
        "overrides": args.overrides,
        "sizes": rows,
        "torch": torch.__version__,
        "matmul_gflops_peer": {p: round(v, 1) for p, v in peers.items()},
    }
    print(json.dumps(result, indent=2))
    atomic_write_json(RESULTS, result)


if __name__ == "__main__":
    main()
