"""Gradient buckets: DDP's assignment (checked against torch's own), when each is ready in
simulated time, and the option's errors."""

import random

import pytest
import torch
import torch.distributed as dist

import topologies
from options.declare import OptionError
from sim.run import run as sim_run
from strategies import AllReduceSGD, Strategy
from strategies.buckets import (
    BACKWARD_SHARE,
    GradientBuckets,
    bucket_bounds,
    ready_fractions,
)


def test_buckets_are_those_of_ddps_own_assignment_reversed():
    rng = random.Random(0)
    for _ in range(200):
        sizes = [rng.randint(1, 60) for _ in range(rng.randint(1, 12))]
        first, cap = rng.randint(1, 200), rng.randint(1, 400)
        tensors = [torch.empty(n) for n in sizes]
        indices, _ = dist._compute_bucket_assignment_by_size(tensors, [first, cap])
        offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        expected = [(offsets[b[0]], offsets[b[-1] + 1]) for b in reversed(indices)]
        assert bucket_bounds(sizes, cap, first) == expected, (sizes, first, cap)


def test_ddps_defaults_give_one_bucket_for_a_small_model_and_several_for_a_large_one():
    assert bucket_bounds([4096, 64, 640, 10], 25 * 2**20, 2**20) == [(0, 4810)]
    # 4M floats: a 1 MiB first bucket (the first 262,144), then 25 MiB buckets.
    bounds = bucket_bounds([2**18] * 16, 25 * 2**20, 2**20)
    assert bounds[-1] == (0, 2**18) and len(bounds) == 2


def test_ready_fractions_follow_backward_in_reverse_parameter_order():
    bounds = [(75, 100), (50, 75), (0, 50)]
    fractions = ready_fractions(bounds, 100)
    forward = 1 - BACKWARD_SHARE
    assert fractions == pytest.approx(
        [forward + BACKWARD_SHARE * 0.25, forward + BACKWARD_SHARE * 0.5, 1.0]
    )
    assert fractions[-1] == 1.0  # exactly: the last bucket is ready with the whole gradient


def test_assemble_puts_parts_back_in_parameter_order_and_checks_their_count():
    parts = GradientBuckets([])
    with pytest.raises(ValueError, match="assemble got 1 parts for 0 buckets"):
        parts.assemble([torch.zeros(1)])


def test_bad_bucket_options_are_one_line_naming_the_field():
    with pytest.raises(OptionError, match="bucket_mb=0 must be a number > 0"):
        AllReduceSGD(bucket_mb=0)
    with pytest.raises(OptionError, match="bucket_mb cannot be combined with compression"):
        AllReduceSGD(bucket_mb=1, compression="fp16")
    with pytest.raises(OptionError, match="bucket_mb cannot be combined with fault_tolerance"):
        AllReduceSGD(bucket_mb=1, fault_tolerance="quorum")


class BadBuckets(Strategy):
    name = "bad_buckets_test_only"

    def worker(self, w):
        w.compute_gradients_in_buckets(bucket_mb=-1)
        yield w.compute_gradients()


def test_a_bad_bucket_size_in_a_program_is_one_line():
    with pytest.raises(ValueError, match=r"bucket_mb=-1 must be a number of MiB > 0"):
        sim_run(BadBuckets(), "quadratic", topologies.star(2), steps=1)
