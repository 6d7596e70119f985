"""GAE and V-trace against their definitions written out as sums, not as the recursions the
module runs."""

import math

import pytest
import torch

from workloads.advantages import gae, vtrace


def _sum_gae(r, v, boot, dones, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, cut where an episode ends (its own step's
    delta uses no next value)."""
    steps = len(r)
    values = [*v, boot]
    out = []
    for t in range(steps):
        total, weight = 0.0, 1.0
        for u in range(t, steps):
            live = 1.0 - dones[u]
            delta = r[u] + gamma * live * values[u + 1] - values[u]
            total += weight * delta
            if dones[u]:
                break
            weight *= gamma * lam
        out.append(total)
    return out


def _paper_vtrace(mu, pi, r, v, boot, gamma, rho_bar, c_bar):
    """Espeholt et al. 2018, eq. (1): v_s = V(x_s) + sum_{t>=s} gamma^(t-s) (prod_{i=s}^{t-1}
    c_i) delta_t V, with delta_t V = rho_t (r_t + gamma V(x_{t+1}) - V(x_t)); no episode end.
    The policy gradient's advantage is rho_s (r_s + gamma v_{s+1} - V(x_s))."""
    steps = len(r)
    values = [*v, boot]
    ratio = [math.exp(p - m) for p, m in zip(pi, mu)]
    rho = [min(rho_bar, x) for x in ratio]
    c = [min(c_bar, x) for x in ratio]
    vs = []
    for s in range(steps):
        total = values[s]
        for t in range(s, steps):
            delta = rho[t] * (r[t] + gamma * values[t + 1] - values[t])
            total += gamma ** (t - s) * math.prod(c[s:t]) * delta
        vs.append(total)
    nxt = [*vs[1:], boot]
    adv = [rho[s] * (r[s] + gamma * nxt[s] - values[s]) for s in range(steps)]
    return vs, adv


def _random(steps, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(steps, 1, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize("lam", [0.0, 0.9, 1.0])
def test_gae_is_the_discounted_sum_of_td_errors_cut_at_episode_ends(lam):
    r, v, _, _ = _random(7, 0)
    dones = torch.tensor([0, 0, 1, 0, 0, 0, 1], dtype=torch.float64).unsqueeze(1)
    boot = torch.tensor([0.7], dtype=torch.float64)
    got = gae(r, v, boot, dones, gamma=0.9, lam=lam).squeeze(1).tolist()
    want = _sum_gae(
        r.squeeze(1).tolist(), v.squeeze(1).tolist(), 0.7, dones.squeeze(1).tolist(), 0.9, lam
    )
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("rho_bar", "c_bar"), [(1.0, 1.0), (2.0, 0.5), (100.0, 100.0)])
def test_vtrace_matches_the_papers_sum_on_a_small_off_policy_example(rho_bar, c_bar):
    r, v, mu, pi = _random(6, 1)
    boot = torch.tensor([-0.3], dtype=torch.float64)
    vs, adv = vtrace(mu, pi, r, v, boot, torch.zeros_like(r), 0.95, rho_bar, c_bar)
    want_vs, want_adv = _paper_vtrace(
        *(x.squeeze(1).tolist() for x in (mu, pi, r, v)), -0.3, 0.95, rho_bar, c_bar
    )
    assert vs.squeeze(1).tolist() == pytest.approx(want_vs, rel=1e-12)
    assert adv.squeeze(1).tolist() == pytest.approx(want_adv, rel=1e-12)


def test_on_policy_vtrace_is_the_n_step_return_and_gae_with_lambda_one():
    r, v, logp, _ = _random(5, 2)
    dones = torch.tensor([0, 1, 0, 0, 0], dtype=torch.float64).unsqueeze(1)
    boot = torch.tensor([1.5], dtype=torch.float64)
    vs, adv = vtrace(logp, logp, r, v, boot, dones, 0.9)
    advantages = gae(r, v, boot, dones, 0.9, 1.0)
    torch.testing.assert_close(vs, advantages + v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(adv, advantages, rtol=1e-12, atol=1e-12)


def test_an_episode_end_cuts_vtrace_into_independent_segments():
    r, v, mu, pi = _random(6, 3)
    dones = torch.tensor([0, 0, 1, 0, 0, 0], dtype=torch.float64).unsqueeze(1)
    boot = torch.tensor([0.4], dtype=torch.float64)
    vs, _ = vtrace(mu, pi, r, v, boot, dones, 0.9, 2.0, 2.0)
    # The first episode ends at step 2: its targets are those of a rollout of 3 steps whose
    # bootstrap is worth nothing; the second is a rollout of its own.
    head, _ = vtrace(
        mu[:3],
        pi[:3],
        r[:3],
        v[:3],
        torch.zeros(1, dtype=torch.float64),
        torch.zeros(3, 1, dtype=torch.float64),
        0.9,
        2.0,
        2.0,
    )
    tail, _ = vtrace(
        mu[3:], pi[3:], r[3:], v[3:], boot, torch.zeros(3, 1, dtype=torch.float64), 0.9, 2.0, 2.0
    )
    torch.testing.assert_close(vs[3:], tail, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vs[:3], head, rtol=1e-12, atol=1e-12)
