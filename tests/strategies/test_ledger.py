"""The ledger against worked examples: global steps, evaluation points, stop, staleness."""

import pytest
import torch

from strategies.ledger import Ledger


class Clock:
    def __init__(self):
        self.t, self.bytes = 0.0, 0.0


def make(owners, combine, steps=4, eval_every=2, target_loss=None):
    clock = Clock()
    evaluated = []

    def evaluate(flat):
        evaluated.append(flat.clone())
        return {"loss": float(flat.sum())}

    ledger = Ledger(
        owners,
        combine,
        steps=steps,
        eval_every=eval_every,
        evaluate=evaluate,
        clock=lambda: clock.t,
        bytes_sent=lambda: clock.bytes,
        target_loss=target_loss,
    )
    return ledger, clock, evaluated


def kinds(ledger):
    return [(r["kind"], r["step"]) for r in ledger.rows]


def test_one_owner_counts_its_steps_evaluates_at_the_points_and_stops_at_steps():
    ledger, clock, evaluated = make([0], "one", steps=3, eval_every=2)
    ledger.start({0: torch.zeros(2)})
    for k in range(1, 5):  # a fourth step after the stop is ignored
        clock.t = float(k)
        ledger.stepped(0, staleness=k - 1, state=torch.full((2,), float(k)))
    assert kinds(ledger) == [
        ("eval", 0),
        ("step", 1),
        ("step", 2),
        ("eval", 2),
        ("step", 3),
        ("eval", 3),
    ]
    assert ledger.stop_reason == "steps" and ledger.step == 3
    assert [r["staleness"] for r in ledger.rows if r["kind"] == "step"] == [0.0, 1.0, 2.0]
    assert [float(e[0]) for e in evaluated] == [0.0, 2.0, 3.0]


def test_the_average_of_replicas_is_taken_at_one_step_even_when_an_owner_is_ahead():
    ledger, clock, evaluated = make([0, 1], "mean", steps=4, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    ledger.stepped(0, 0, torch.tensor([10.0]))  # rank 0 at step 1
    ledger.stepped(0, 0, torch.tensor([20.0]))  # rank 0 at step 2, rank 1 still at 0
    assert ledger.step == 0
    ledger.stepped(1, 0, torch.tensor([30.0]))  # rank 1 at step 1: global step 1
    assert ledger.step == 1
    assert float(evaluated[-1]) == pytest.approx((10.0 + 30.0) / 2)  # rank 0's copy at step 1
    ledger.stepped(1, 0, torch.tensor([50.0]))
    assert float(evaluated[-1]) == pytest.approx((20.0 + 50.0) / 2)


def test_shards_concatenate_in_owner_order():
    ledger, _, evaluated = make([3, 1], "concat", steps=1, eval_every=1)
    ledger.start({3: torch.zeros(1), 1: torch.zeros(2)})
    ledger.stepped(1, 0, torch.tensor([1.0, 2.0]))
    ledger.stepped(3, 0, torch.tensor([9.0]))
    assert evaluated[-1].tolist() == [9.0, 1.0, 2.0]
    assert ledger.stop_reason == "steps"


def test_samples_and_bytes_are_what_was_counted_when_a_row_was_made():
    ledger, clock, _ = make([0], "one", steps=2, eval_every=1)
    ledger.start({0: torch.zeros(1)})
    ledger.computed(0, 32)
    ledger.computed(1, 32)
    clock.bytes = 100.0
    ledger.stepped(0, 0, torch.ones(1))
    step_row = ledger.rows[1]
    assert (step_row["samples"], step_row["bytes"]) == (64.0, 100.0)


def test_a_target_loss_stops_at_the_first_evaluation_that_reaches_it():
    ledger, _, _ = make([0], "one", steps=10, eval_every=1, target_loss=2.5)
    ledger.start({0: torch.tensor([5.0])})
    for value in (4.0, 2.0, 1.0):
        ledger.stepped(0, 0, torch.tensor([value]))
    assert ledger.stop_reason == "target_loss" and ledger.step == 2
    assert ledger.target_reached["step"] == 2


def test_finish_evaluates_the_last_step_once_if_it_was_not_an_evaluation_point():
    ledger, _, evaluated = make([0], "one", steps=10, eval_every=5)
    ledger.start({0: torch.zeros(1)})
    ledger.stepped(0, 0, torch.ones(1))
    ledger.finish("max_time")
    ledger.finish("max_time")
    assert kinds(ledger)[-1] == ("eval", 1) and len(evaluated) == 2
    assert ledger.stop_reason == "max_time"


def test_an_owner_that_never_steps_is_named_instead_of_stalling_forever():
    ledger, _, _ = make([0, 1], "mean", steps=2, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    with pytest.raises(RuntimeError, match="rank 0 has applied 1001 .* rank 1 only 0"):
        for _ in range(1001):
            ledger.stepped(0, 0, torch.zeros(1))


def test_a_steps_staleness_is_its_first_owners():
    ledger, _, _ = make([0, 1], "mean", steps=1, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    ledger.stepped(1, 3, torch.zeros(1))
    ledger.stepped(0, 0, torch.zeros(1))
    assert ledger.rows[1]["staleness"] == 0.0  # rank 0's, not rank 1's 3
