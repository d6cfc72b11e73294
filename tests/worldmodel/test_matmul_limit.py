"""benches/matmul_limit.py: the recorder sees every matmul of an update with its layout."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from benches.bench_worldmodel import ACTIONS, OBS_DIM, random_batch
from benches.matmul_limit import MatmulRecorder, _operand, alone_seconds, matmul_flops
from worldmodel import ActionSpec, Agent, dreamer_config


def test_flops_by_hand_and_layouts_reproduced():
    a, b, bias = torch.randn(3, 5), torch.randn(4, 5).t(), torch.randn(4)
    batched = torch.randn(2, 3, 5), torch.randn(2, 5, 7)
    with MatmulRecorder() as rec:
        torch.mm(a, b)
        torch.addmm(bias, a, b)  # bias broadcast: an expanded (stride 0) operand
        torch.addmm(bias, a, b)
        torch.bmm(*batched)
    calls = dict(rec.calls)
    assert sorted((op, n) for (op, _, _), n in calls.items()) == [("addmm", 2), ("bmm", 1), ("mm", 1)]
    layouts = {op: lay for (op, _, lay) in calls}
    assert layouts["mm"] == (((3, 5), (5, 1)), ((5, 4), (1, 5)))  # the transpose is kept
    assert matmul_flops("mm", layouts["mm"]) == 2 * 3 * 5 * 4
    assert matmul_flops("addmm", layouts["addmm"]) == 2 * 3 * 5 * 4
    assert matmul_flops("bmm", layouts["bmm"]) == 2 * 2 * 3 * 5 * 7
    for layout in layouts["addmm"]:
        operand = _operand(layout, torch.float32)
        assert (tuple(operand.shape), operand.stride()) == layout
    gflop, seconds = alone_seconds(rec.calls, repeats=1)
    assert gflop * 1e9 == 2 * (2 * 3 * 5 * 4) + 2 * 3 * 5 * 4 + 2 * 2 * 3 * 5 * 7 and seconds > 0


def test_an_agent_update_records_the_flops_torch_counts():
    # vector observations: no convolutions, so every counted FLOP is a recorded matmul
    torch.manual_seed(0)
    cfg = dreamer_config("tiny", ["batch_size=2", "batch_length=8", "behavior.horizon=3"])
    agent = Agent({"vector": (OBS_DIM,)}, ActionSpec(True, ACTIONS), cfg)
    batch = random_batch(cfg.batch_size, cfg.batch_length)
    with FlopCounterMode(display=False) as counter, MatmulRecorder() as rec:
        agent.train(batch)
    recorded = sum(matmul_flops(op, lay) * n for (op, _, lay), n in rec.calls.items())
    assert recorded == counter.get_total_flops() > 0
