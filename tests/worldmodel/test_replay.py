"""Memory-mapped sequence replay: contiguity, workers, wrap-around, sampling mix, save/load."""

import numpy as np
import pytest

from worldmodel.replay import Replay, ReplayError


def step(t: int, worker: int = 0) -> dict[str, np.ndarray]:
    return {
        "vector": np.array([t, worker], dtype=np.float32),
        "action": np.zeros(2, dtype=np.float32),
        "reward": np.float32(t),
        "is_first": np.bool_(t == 0),
    }


def test_sample_shapes_dtypes_and_contiguity(tmp_path):
    replay = Replay(tmp_path, capacity=100, seed=0)
    for t in range(30):
        replay.add(step(t))
    assert len(replay) == 30
    batch = replay.sample(8, 10)
    assert batch["vector"].shape == (8, 10, 2) and batch["reward"].shape == (8, 10)
    assert batch["is_first"].dtype.is_floating_point is False
    t = batch["reward"].numpy()
    assert (np.diff(t, axis=1) == 1).all()  # consecutive steps of one stream
    assert t.min() >= 0 and t.max() <= 29
    assert isinstance(replay.arrays["vector"], np.memmap)
    assert (tmp_path / "vector.npy").exists()


def test_wrap_around_keeps_only_the_newest_steps_in_order(tmp_path):
    replay = Replay(tmp_path, capacity=20, recent_frac=0.0, seed=1)
    for t in range(55):
        replay.add(step(t))
    assert len(replay) == 20
    t = replay.sample(64, 5)["reward"].numpy()
    assert t.min() >= 35 and t.max() <= 54
    assert (np.diff(t, axis=1) == 1).all()
    starts = set(t[:, 0].tolist())
    assert starts <= set(range(35, 51)) and len(starts) > 8


def test_parallel_workers_never_mix_streams(tmp_path):
    replay = Replay(tmp_path, capacity=60, workers=3, seed=2)
    for t in range(15):
        for w in range(3):
            replay.add(step(t + 100 * w, w), worker=w)
    batch = replay.sample(32, 6)
    vec = batch["vector"].numpy()
    assert (vec[:, :, 1] == vec[:, :1, 1]).all()  # one worker per sequence
    assert (np.diff(vec[:, :, 0], axis=1) == 1).all()
    assert len(set(vec[:, 0, 1].tolist())) == 3
    with pytest.raises(ReplayError, match="worker 3"):
        replay.add(step(0), worker=3)


def test_recency_sampling_prefers_new_data(tmp_path):
    uniform = Replay(tmp_path / "u", capacity=1000, recent_frac=0.0, seed=3)
    recent = Replay(tmp_path / "r", capacity=1000, recent_frac=1.0, seed=3)
    for t in range(1000):
        uniform.add(step(t))
        recent.add(step(t))
    u = uniform.sample(2000, 1)["reward"].numpy()
    r = recent.sample(2000, 1)["reward"].numpy()
    assert abs(u.mean() - 499.5) < 25  # uniform mean of 0..999
    # density 1/(1+age) on ages 0..999: mean age = 1000/ln(1001) - 1 = 143.8
    assert abs((999 - r).mean() - 143.8) < 15


def test_bad_input_names_key_expected_and_got(tmp_path):
    replay = Replay(tmp_path, capacity=10)
    replay.add(step(0))
    bad = step(1)
    bad["vector"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ReplayError, match=r"'vector': expected shape \(2,\), got \(3,\)"):
        replay.add(bad)
    bad = step(1)
    bad["is_first"] = np.float32(0.5)
    with pytest.raises(ReplayError, match="'is_first': expected dtype bool"):
        replay.add(bad)
    with pytest.raises(ReplayError, match="keys"):
        replay.add({"vector": np.zeros(2, np.float32)})
    with pytest.raises(ReplayError, match="length 5"):
        replay.sample(2, 5)
    with pytest.raises(ReplayError, match="capacity"):
        Replay(tmp_path / "x", capacity=2, workers=3)


def test_save_load_resumes_identical_contents_and_samples(tmp_path):
    replay = Replay(tmp_path / "run", capacity=50, workers=2, seed=4)
    for t in range(40):
        replay.add(step(t, t % 2), worker=t % 2)
    replay.sample(4, 5)
    saved = replay.save(tmp_path / "ckpt")
    expected = [replay.sample(4, 5) for _ in range(3)]
    resumed = Replay.load(saved)
    assert len(resumed) == len(replay) and resumed.workers == 2
    for want in expected:
        got = resumed.sample(4, 5)
        assert all(np.array_equal(got[k].numpy(), want[k].numpy()) for k in want)
    resumed.add(step(99, 1), worker=1)  # resumed buffer keeps working
    assert len(resumed) == 41
    with pytest.raises(ReplayError, match="cannot load replay"):
        Replay.load(tmp_path / "missing")


def test_save_in_place(tmp_path):
    replay = Replay(tmp_path, capacity=10, seed=5)
    for t in range(7):
        replay.add(step(t))
    replay.save()
    again = Replay.load(tmp_path)
    assert np.array_equal(np.asarray(again.arrays["reward"][0, :7]), np.arange(7, dtype=np.float32))


def test_a_million_step_buffer_lives_in_files(tmp_path):
    replay = Replay(tmp_path, capacity=1_000_000, workers=4, seed=6)
    for t in range(3):
        replay.add(step(t, 2), worker=2)
    array = replay.arrays["vector"]
    assert isinstance(array, np.memmap) and array.shape == (4, 250_000, 2)
    assert (tmp_path / "vector.npy").stat().st_size >= 1_000_000 * 2 * 4
    assert replay.sample(2, 3)["reward"].tolist() == [[0.0, 1.0, 2.0]] * 2
