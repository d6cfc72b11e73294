import json
import platform
import random

import numpy as np
import torch

from worldmodel import run as run_module
from worldmodel.checkpoint import load_checkpoint, save_checkpoint
from worldmodel.run import RunDir, keep_freed_memory, read_metrics, rng_state, seed_everything, set_rng_state


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_is_reproducible():
    seed_everything(5)
    a = _draw()
    seed_everything(5)
    assert _draw() == a
    seed_everything(6)
    assert _draw() != a


def test_rng_state_survives_a_checkpoint(tmp_path):
    seed_everything(1)
    _draw()
    save_checkpoint(tmp_path / "rng.safetensors", {"rng": rng_state()})
    expected = _draw()
    seed_everything(99)
    state, _ = load_checkpoint(tmp_path / "rng.safetensors")
    set_rng_state(state["rng"])
    assert _draw() == expected


def test_rundir_writes_config_metrics_and_tensorboard(tmp_path):
    with RunDir(tmp_path / "run", {"lr": 0.1}) as run:
        run.log(0, {"loss": torch.tensor(2.0), "n": np.int64(3)})
        run.log(10, {"loss": 1.0})
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["lr"] == 0.1 and "version" in config
    rows = read_metrics(tmp_path / "run")
    assert rows == [{"step": 0, "loss": 2.0, "n": 3}, {"step": 10, "loss": 1.0}]
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run").iterdir())


def test_keep_freed_memory_sets_glibc_malloc_options_or_reports_it_cannot(monkeypatch):
    if platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True
        assert keep_freed_memory() is True  # idempotent

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(run_module.ctypes, "CDLL", no_libc)
    assert keep_freed_memory() is False
