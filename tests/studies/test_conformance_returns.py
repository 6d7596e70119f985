"""The conformance kit on a workload evaluated by its return: it compares the returns (the
loss of such a run is NaN, which would differ from itself), and names them."""

import sim
from studies.conformance import Conformance, _differences, _loss_verdict
from tests import return_workloads  # noqa: F401  (registers return_quadratic)


def _run(seed):
    return sim.run("allreduce", "return_quadratic", "star:n=2", steps=6, eval_every=2, seed=seed)


def test_equal_return_runs_conform_and_different_ones_name_their_returns():
    a, b, other = _run(0), _run(0), _run(1)
    assert _differences(a, b, exact=True, rtol=1e-6, atol=1e-8) == []
    found = _differences(a, other, exact=True, rtol=1e-6, atol=1e-8)
    assert any(d.startswith("evaluation returns: sim [") for d in found)
    verdict = _loss_verdict([a, other], [b, other], k=3.0, loss_rtol=0.05)
    assert verdict is not None and verdict.ok
    assert list(verdict.sim) == [a.summary["final_return"], other.summary["final_return"]]
    text = str(Conformance("allreduce", a, b))
    assert f"final return     sim {a.summary['final_return']:>10.6g}" in text
