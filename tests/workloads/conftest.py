"""One intra-op thread per test: these models are tiny, and on a shared 2-core box torch's
default thread pool spends more time spinning than computing (10x slower training loops)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
