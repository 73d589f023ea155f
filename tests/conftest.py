"""Shared test settings."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tests use tiny tensors: with two threads, OpenMP spin-waiting dominates and a busy second
    # core makes the suite several times slower. Benchmarks, not tests, measure speed.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
