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
    # After step k the owner communicates (its state becomes k + 0.5) before step k + 1:
    # an evaluation point's state is the settled one, the last step's the applied one.
    ledger, clock, evaluated = make([0], "one", steps=3, eval_every=2)
    ledger.start({0: torch.zeros(2)})
    for k in range(1, 5):  # a fourth step after the stop is ignored
        clock.t = float(k)
        if k > 1:
            ledger.settled(0, torch.full((2,), k - 0.5))
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
    assert [float(e[0]) for e in evaluated] == [0.0, 2.5, 3.0]
    eval_two = next(r for r in ledger.rows if r["kind"] == "eval" and r["step"] == 2)
    # Evaluated once settled (just before step 3), stamped when step 2 became global: the
    # time, samples and bytes of its step row, so time-to-target is not a step late.
    step_two = next(r for r in ledger.rows if r["kind"] == "step" and r["step"] == 2)
    assert eval_two["time"] == step_two["time"] == 2.0


def test_the_average_of_replicas_is_taken_at_one_step_even_when_an_owner_is_ahead():
    ledger, clock, evaluated = make([0, 1], "mean", steps=4, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    ledger.stepped(0, 0, torch.tensor([10.0]))  # rank 0 at step 1
    ledger.settled(0, torch.tensor([15.0]))  # ... its state at step 1 after communicating
    ledger.stepped(0, 0, torch.tensor([20.0]))  # rank 0 at step 2, rank 1 still at 0
    assert ledger.step == 0
    ledger.stepped(1, 0, torch.tensor([30.0]))  # rank 1 at step 1: global step 1
    assert ledger.step == 1 and len(evaluated) == 1  # waits for rank 1's settled state
    ledger.settled(1, torch.tensor([35.0]))
    assert float(evaluated[-1]) == pytest.approx((15.0 + 35.0) / 2)  # rank 0's copy at step 1
    assert ledger.rows[-1]["consensus"] == pytest.approx(100.0)  # both 10 away from 25
    ledger.stepped(1, 0, torch.tensor([50.0]))
    ledger.settled(0, torch.tensor([22.0]))
    ledger.settled(1, torch.tensor([52.0]))
    assert float(evaluated[-1]) == pytest.approx((22.0 + 52.0) / 2)


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
    values = (4.0, 2.0, 1.0)
    for k, value in enumerate(values):
        if k:
            ledger.settled(0, torch.tensor([values[k - 1]]))
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


def test_a_rank_stepping_far_beyond_the_run_is_named_instead_of_stalling_forever():
    ledger, _, _ = make([0, 1], "mean", steps=2, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    for k in range(1, 1021):  # 10 x steps + 1000 steps: still tolerated
        ledger.rank_stepped(5, k)
    with pytest.raises(RuntimeError, match=r"rank 5 has applied 1021 .* \(ranks \[0, 1\]\)"):
        ledger.rank_stepped(5, 1021)


def test_an_owners_state_at_a_global_step_is_the_one_it_settled_with_when_it_moves_on():
    # The owner that makes step 1 global loads new parameters (its averaging) and steps
    # again before the run ends: the final evaluation at step 1 has its state as of just
    # before step 2, not a later one.
    ledger, _, evaluated = make([0, 1], "mean", steps=10, eval_every=5)
    current = {0: torch.zeros(1), 1: torch.zeros(1)}
    ledger.start({r: (lambda r=r: current[r].clone()) for r in (0, 1)})
    current[1] = torch.tensor([4.0])
    ledger.stepped(1, 0, lambda: current[1].clone())
    current[0] = torch.tensor([2.0])
    ledger.stepped(0, 0, lambda: current[0].clone())  # global step 1
    current[0] = torch.tensor([100.0])  # loads after its step, then steps on
    ledger.settled(0, lambda: current[0].clone())
    current[0] = torch.tensor([7.0])
    ledger.stepped(0, 0, lambda: current[0].clone())
    ledger.finish("max_time")
    assert float(evaluated[-1]) == pytest.approx((100.0 + 4.0) / 2)


def test_when_programs_end_by_themselves_the_final_model_is_their_final_states():
    ledger, _, evaluated = make([0, 1], "mean", steps=10, eval_every=5)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    ledger.stepped(0, 0, torch.tensor([2.0]))
    ledger.stepped(1, 0, torch.tensor([4.0]))
    ledger.stepped(1, 0, torch.tensor([8.0]))  # rank 1 ends one step ahead
    ledger.finish("finished", {0: torch.tensor([2.0]), 1: torch.tensor([8.0])})
    assert ledger.step == 1 and float(evaluated[-1]) == pytest.approx(5.0)
    assert float(ledger.global_parameters()) == pytest.approx(5.0)


def test_a_steps_staleness_is_its_first_owners():
    ledger, _, _ = make([0, 1], "mean", steps=1, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    ledger.stepped(1, 3, torch.zeros(1))
    ledger.stepped(0, 0, torch.zeros(1))
    assert ledger.rows[1]["staleness"] == 0.0  # rank 0's, not rank 1's 3


def test_the_last_steps_state_is_the_applied_one_even_if_an_owner_settles_it():
    # An owner that runs on past the last step (asynchronous strategies) must not replace
    # the state taken when it applied it: the real backend never reports that settle.
    ledger, _, evaluated = make([0, 1], "mean", steps=1, eval_every=1)
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    ledger.stepped(0, 0, torch.tensor([2.0]))
    ledger.settled(0, torch.tensor([100.0]))  # rank 0 mixes and moves on
    ledger.stepped(1, 0, torch.tensor([4.0]))
    assert float(evaluated[-1]) == pytest.approx(3.0)


def test_a_logged_value_named_at_step_is_a_value_not_the_rows_step():
    # Found by mypy: log names were passed as keywords next to `_row`'s `at_step`, so
    # `w.log(at_step=7)` silently moved the log row to step 7.
    ledger, _, _ = make([0], "one")
    ledger.start({0: torch.zeros(2)})
    ledger.logged(0, {"at_step": 7.0})
    (logged,) = [r for r in ledger.rows if r["kind"] == "log"]
    assert logged["step"] == 0 and logged["at_step"] == 7.0 and logged["rank"] == 0


@pytest.mark.parametrize("logs_with_steps", [False, True])
def test_a_log_right_after_the_stopping_step_is_kept_only_where_the_strategy_says_so(
    logs_with_steps,
):
    # Two ranks apply step 2, which stops the run: owner 0 (the global model) first, then
    # rank 1 (an equal replica, not an owner), each logging right after its step. Later
    # logs, and a rank's log after another event, are after the stop: dropped.
    from strategies.events import Logged, Sent, Stepped

    ledger, clock, _ = make([0], "one", steps=2, eval_every=2)
    ledger.logs_with_steps = logs_with_steps
    ledger.start({0: torch.zeros(2)})
    events = []
    for k in (1, 2):
        for rank in (0, 1):
            events += [Stepped(float(k), rank, 0, torch.full((2,), float(k)))]
            events += [Logged(float(k), rank, {"lag": 10 * k + rank})]
    events += [Logged(2.0, 0, {"lag": 99}), Sent(2.0, 1, 8), Logged(2.0, 1, {"lag": 98})]
    for event in events:
        clock.t = event.at
        ledger.record(event)
    logged = [(r["step"], r["rank"], r["lag"]) for r in ledger.rows if r["kind"] == "log"]
    # (rank 1's log after step 1 is stamped with the global step then: 1)
    kept = [(2, 0, 20.0), (2, 1, 21.0)] if logs_with_steps else []
    assert logged == [(1, 0, 10.0), (1, 1, 11.0), *kept]
