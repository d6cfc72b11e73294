import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from worldmodel.checkpoint import (
    CheckpointError,
    atomic_write_json,
    check_config_compatible,
    load_checkpoint,
    save_checkpoint,
)


def test_roundtrip_nested_state_with_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    state = {"model": model.state_dict(), "optim": optim.state_dict(), "step": 7, "name": "x"}
    path = save_checkpoint(tmp_path / "ckpt.safetensors", state, {"config": {"lr": 1e-3}})
    loaded, meta = load_checkpoint(path)
    assert meta == {"config": {"lr": 1e-3}}
    assert loaded["step"] == 7 and loaded["name"] == "x"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optim"])  # int keys of the per-parameter state come back
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optim.state_dict()["state"][0]["exp_avg"])


def test_missing_and_corrupt_checkpoints_give_readable_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.safetensors")
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    (tmp_path / "junk.safetensors").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_config_mismatch_names_the_keys():
    check_config_compatible({"a": 1, "m": {"d": 2}}, {"a": 1, "m": {"d": 2}})
    with pytest.raises(CheckpointError, match=r"m\.d: checkpoint=2 current=3"):
        check_config_compatible({"a": 1, "m": {"d": 2}}, {"a": 1, "m": {"d": 3}})
    check_config_compatible({"run": {"seed": 1}}, {"run": {"seed": 2}}, ignore=("run.",))


def test_kill_mid_write_keeps_previous_checkpoint(tmp_path):
    """SIGKILL a process while it rewrites a large checkpoint: the last complete one still loads."""
    path = tmp_path / "ckpt.safetensors"
    child = textwrap.dedent(
        f"""
        import torch
        from worldmodel.checkpoint import save_checkpoint
        k = 0
        while True:
            save_checkpoint({str(path)!r}, {{"w": torch.full((16_000_000,), float(k))}}, {{"k": k}})
            k += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        deadline = time.monotonic() + 120
        # Wait until one checkpoint is complete and the next one is being written.
        while time.monotonic() < deadline:
            if path.exists() and any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
                break
            time.sleep(0.01)
        else:
            pytest.fail("child never started a second write")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    state, meta = load_checkpoint(path)
    assert torch.all(state["w"] == float(meta["k"]))


def test_atomic_write_json_replaces(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
