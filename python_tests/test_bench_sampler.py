"""The sampler benchmark's agreement check: it passes on the real peers and fails on a planted mismatch."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_sampler
from benchmarks.bench_sampler import AgreementError, SamplerProblem, check_agreement, make_check
from bfr_fast.models import MLP

PEERS = bench_sampler.installed_peers()
needs_peers = pytest.mark.skipif(
    set(PEERS) != set(bench_sampler.PEERS),
    reason=f"the sampler's peers are not all installed (have {PEERS}; pip install -e '.[bench]')",
)


def test_check_agreement_passes_within_tolerance_and_reports_differences():
    ours = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    differences = check_agreement({"fused": ours, "peer": ours + 1e-6}, {"fused": 3, "peer": 3}, 3)
    assert differences.keys() == {"peer"}
    assert differences["peer"] == pytest.approx(1e-6 / 4)


@pytest.mark.parametrize("planted", ["value", "nan"])
def test_check_agreement_fails_on_a_planted_output_mismatch(planted):
    ours = torch.tensor([1.0, -2.0, 4.0])
    other = ours.clone()
    other[1] = -2.01 if planted == "value" else float("nan")
    with pytest.raises(AgreementError, match="peer"):
        check_agreement({"fused": ours, "peer": other}, {"fused": 3, "peer": 3}, 3)


def test_check_agreement_fails_on_a_different_number_of_model_calls():
    ours = torch.ones(3)
    with pytest.raises(AgreementError, match="model calls"):
        check_agreement({"fused": ours, "peer": ours}, {"fused": 3, "peer": 4}, 3)


def _small_problem() -> SamplerProblem:
    torch.manual_seed(0)
    model = bench_sampler._seeded(MLP(6, hidden=16, depth=1, time_embed_dim=8), 0)
    return SamplerProblem("small", model, torch.randn(5, 6), {})


@needs_peers
@pytest.mark.parametrize("method", list(bench_sampler.METHODS))
def test_the_peers_agree_with_the_solver(method):
    differences = make_check(_small_problem(), method, 3, PEERS)()
    assert set(differences) == set(PEERS) - ({"torchode"} if method != "euler" else set())
    assert max(differences.values()) < bench_sampler.TOLERANCE


@needs_peers
def test_the_check_fails_when_the_peers_see_another_velocity():
    problem = _small_problem()

    def planted(x, t, **extras):
        # The peers pass one 0-d time for the batch, the solver a (B,) tensor: only the peers get the offset.
        velocity = problem.model(x, t, **extras)
        return velocity + 1e-3 if t.dim() == 0 else velocity

    with pytest.raises(AgreementError, match="flow_matching"):
        make_check(problem, "midpoint", 3, PEERS, model=planted)()


@needs_peers
def test_every_quick_case_passes_its_check():
    cases = bench_sampler.cases(torch.device("cpu"), quick=True)
    assert len(cases) == 4 * len(bench_sampler.METHODS) * len(bench_sampler.QUICK_STEPS)
    for case in cases:
        assert set(case.fns) == {"fused", *PEERS} - ({"torchode"} if "euler" not in case.name else set())
        assert max(case.check().values()) < bench_sampler.TOLERANCE
