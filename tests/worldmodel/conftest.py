"""Shared fixtures of the worldmodel tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (tiny tensors: threading only adds overhead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
