"""Test-session settings shared by tests/ and the packages' doctests."""

import torch

# Tests train many tiny models; on two shared cores extra intra-op threads only add
# synchronisation stalls (measured 20x slower under load), so use one.
torch.set_num_threads(1)
