"""Pruning tests run single-threaded."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the pruning solves are small; 2 threads on a shared core only thrash
    yield
    torch.set_num_threads(old)
