"""Least squares: the closed-form optimum and the curvature constants theory checks use."""

import pytest
import torch

from workloads import Quadratic, quadratic


def test_optimum_matches_lstsq_and_zero_gradient():
    q = quadratic(n_samples=200, dim=8, condition_number=50.0, data_seed=3)
    assert isinstance(q, Quadratic)
    expected = torch.linalg.lstsq(q.A.double(), q.b.double().unsqueeze(-1)).solution.squeeze(-1)
    torch.testing.assert_close(q.optimum, expected)
    gradient = q.A.double().T @ (q.A.double() @ q.optimum - q.b.double()) / len(q.b)
    assert gradient.abs().max() < 1e-10
    residual = q.A.double() @ expected - q.b.double()
    assert q.optimal_loss == pytest.approx(0.5 * float(residual.square().mean()), rel=1e-12)


def test_curvature_constants_follow_condition_number():
    q = quadratic(dim=6, condition_number=100.0)
    assert q.smoothness == pytest.approx(1.0, rel=1e-5)
    assert q.strong_convexity == pytest.approx(0.01, rel=1e-4)


def test_noise_free_problem_has_zero_optimal_loss():
    assert quadratic(noise=0.0).optimal_loss < 1e-10


def test_gradient_descent_reaches_optimal_loss():
    q = quadratic(n_samples=256, dim=10, condition_number=10.0)
    model = q.make_model(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0 / q.smoothness)
    start = q.suboptimality(model)
    for _ in range(300):  # linear rate (1 - 1/kappa)^k: 0.9^300 ~ 2e-14
        opt.zero_grad()
        q.loss(model(q.A), q.b).backward()
        opt.step()
    assert start > 0.1
    assert q.suboptimality(model) < 1e-6 * start
    assert q.evaluate(model)["loss"] == pytest.approx(q.optimal_loss, rel=1e-4)
    weight = model.weight.detach().double().squeeze(0)
    torch.testing.assert_close(weight, q.optimum, atol=1e-4, rtol=0)


def test_minibatch_sgd_decreases_loss():
    q = quadratic(batch_size=16)
    model = q.make_model(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    before = q.evaluate(model)["loss"]
    stream = q.batches(0, 2, seed=0)
    for _ in range(200):
        x, y = next(stream)
        opt.zero_grad()
        q.loss(model(x), y).backward()
        opt.step()
    assert q.evaluate(model)["loss"] < 0.05 * before


def test_evaluate_is_the_training_objective_without_accuracy():
    q = quadratic()
    model = q.make_model(seed=0)
    metrics = q.evaluate(model)
    assert set(metrics) == {"loss"}
    assert metrics["loss"] == pytest.approx(q.suboptimality(model) + q.optimal_loss, rel=1e-5)


def test_data_seed_controls_problem():
    assert torch.equal(quadratic(data_seed=1).A, quadratic(data_seed=1).A)
    assert not torch.equal(quadratic(data_seed=1).A, quadratic(data_seed=2).A)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"partition": "dirichlet"}, "partition='dirichlet' needs 1-D integer class targets"),
        ({"partition": "by_class"}, "use partition='iid'"),
        ({"n_samples": 5, "dim": 10}, "n_samples=5"),
        ({"dim": 0}, "dim=0"),
        ({"condition_number": 0.5}, "condition_number=0.5"),
        ({"noise": -1.0}, "noise=-1.0"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        quadratic(**kwargs)
    assert "\n" not in str(err.value)
