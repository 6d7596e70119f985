import pytest
import torch

from strategies.optim import OptimizerSpec, ScheduleSpec
from strategies.replica import FlatOptimizer


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "sgd", "lr": 0.1},
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
        {"name": "adam", "lr": 0.01},
        {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
        {"name": "adagrad", "lr": 0.1},
    ],
)
def test_flat_optimizer_equals_torch_optimizer_on_the_module(spec):
    """Stepping one flat buffer is the same maths as stepping the module's parameters."""
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    reference = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    ref_opt = OptimizerSpec.parse(spec).build(reference)
    flat = torch.cat([p.detach().reshape(-1) for p in reference])
    flat_opt = FlatOptimizer(flat, OptimizerSpec.parse(spec))
    for _ in range(5):
        grads = [torch.randn_like(p) for p in reference]
        for p, g in zip(reference, grads):
            p.grad = g
        ref_opt.step()
        flat_opt.step(torch.cat([g.reshape(-1) for g in grads]))
        torch.testing.assert_close(flat, torch.cat([p.detach().reshape(-1) for p in reference]))


def test_schedule_changes_the_step_size():
    p = torch.zeros(1)
    opt = FlatOptimizer(
        p,
        OptimizerSpec.parse({"name": "sgd", "lr": 1.0}),
        ScheduleSpec.parse({"name": "step", "every": 1, "gamma": 0.5}),
    )
    for _ in range(3):
        opt.step(torch.ones(1))
    assert p.item() == pytest.approx(-(1 + 0.5 + 0.25))


def test_lr_scale_multiplies_the_learning_rate():
    p = torch.zeros(1)
    opt = FlatOptimizer(p, OptimizerSpec.parse({"name": "sgd", "lr": 1.0}))
    opt.step(torch.ones(1), lr_scale=0.25)
    assert p.item() == -0.25
    assert opt.optimizer.param_groups[0]["lr"] == 0.25  # the scale is per step, base lr kept
    opt.step(torch.ones(1))
    assert p.item() == -1.25


def test_cosine_schedule_warms_up_then_decays_to_floor():
    s = ScheduleSpec.parse({"name": "cosine", "warmup": 2, "floor": 0.1})
    assert s.factor(0, 10) == 0.5 and s.factor(1, 10) == 1.0
    assert s.factor(10, 10) == pytest.approx(0.1)


def test_callable_optimizer_factory():
    spec = OptimizerSpec.parse(lambda params: torch.optim.SGD(params, lr=2.0))
    p = torch.zeros(1)
    FlatOptimizer(p, spec).step(torch.ones(1))
    assert p.item() == -2.0


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"name": "lion"}, "optimizer name='lion' is unknown"),
        ({"name": "sgd", "lr": -1}, "rejected options"),
        ({"name": "adam", "betas": 3}, "rejected options"),
        # NaN passes torch's own checks and trained to a NaN loss; 1e308 overflowed at the
        # first update ("value cannot be converted to type float without overflow").
        ({"name": "sgd", "lr": float("nan")}, r"option lr=nan must be a finite number"),
        ({"name": "adam", "betas": (0.9, float("nan"))}, r"option betas=\(0.9, nan\) must be"),
        ({"name": "sgd", "lr": 1e308}, r"option lr=1e\+308 is over 1000"),
        ("sgd:lr=nan", r"option lr=nan must be a finite number"),
    ],
)
def test_optimizer_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        OptimizerSpec.parse(bad)


def test_schedule_errors():
    with pytest.raises(ValueError, match="lr_schedule name='linear'"):
        ScheduleSpec.parse("linear")
    with pytest.raises(ValueError, match="got options"):
        ScheduleSpec.parse({"name": "step", "period": 3})
    with pytest.raises(ValueError, match=r"lr_schedule cosine.warmup=inf must be a number"):
        ScheduleSpec.parse("cosine:warmup=inf")
