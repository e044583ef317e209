"""The planner without a database: knobs, costs and the plan each situation gets."""

from __future__ import annotations

import pytest

from lateinteract_pg import limits
from lateinteract_pg.search.planner import Knobs, default_knobs, estimate_costs, plan_search

BIG = {"n_tokens": 2_000_000, "n_documents": 20_000, "has_index": True, "dim": 128}


@pytest.mark.parametrize("k", [1, 5, 10, 11, 50, 66, 67, 100, 1000, 5000, 5001, limits.MAX_K])
def test_default_knobs_rescore_at_least_k_and_stay_within_pgvector(k: int) -> None:
    knobs = default_knobs(k)
    assert knobs.rescore_depth >= k  # stage 2 must see k candidates to return k hits
    assert knobs.rescore_depth <= limits.MAX_K
    assert 1 <= knobs.candidates_per_token <= knobs.ef_search <= limits.MAX_EF_SEARCH


def test_default_knobs_grow_with_k() -> None:
    previous = default_knobs(1)
    for k in range(2, 2000, 7):
        knobs = default_knobs(k)
        assert knobs.candidates_per_token >= previous.candidates_per_token
        assert knobs.rescore_depth >= previous.rescore_depth
        previous = knobs
    assert default_knobs(10) == Knobs(150, 150, 200)  # the measured defaults


def test_index_cost_is_sublinear_and_exhaustive_linear_in_size() -> None:
    knobs = default_knobs(10)
    small = estimate_costs(1_000_000, 10_000, 128, 32, knobs)
    large = estimate_costs(10_000_000, 100_000, 128, 32, knobs)
    assert large["exhaustive"] > 9 * small["exhaustive"]
    assert large["index"] < 1.01 * small["index"]


def test_small_collections_scan_and_large_ones_probe() -> None:
    knobs = default_knobs(10)
    small = plan_search(n_tokens=6_000, n_documents=80, has_index=True, dim=384, probes=23,
                        knobs=knobs)  # fmt: skip
    assert small.kind == "exhaustive"
    assert plan_search(**BIG, probes=32, knobs=knobs).kind == "index"


def test_without_an_index_the_plan_is_exhaustive_unless_forced() -> None:
    knobs = default_knobs(10)
    assert plan_search(**{**BIG, "has_index": False}, probes=32, knobs=knobs).kind == "exhaustive"
    forced = plan_search(**{**BIG, "has_index": False}, probes=32, knobs=knobs, forced="index")
    assert forced.kind == "index"


def test_a_selective_filter_makes_the_exhaustive_plan_cheaper() -> None:
    knobs = default_knobs(10)
    broad = plan_search(**BIG, probes=32, knobs=knobs, matching=(10_000, 1_000_000))
    narrow = plan_search(**BIG, probes=32, knobs=knobs, matching=(20, 2_000))
    assert broad.kind == "index" and narrow.kind == "exhaustive"
    # the index plan's cost grows as fewer documents pass: its scans visit more tokens
    assert narrow.costs["index"] > broad.costs["index"]


def test_filtered_scan_budget_is_the_shared_formula_within_bounds() -> None:
    knobs = default_knobs(10)
    for passing in (1, 100, 20_000, 400_000, 2_000_000):
        plan = plan_search(**BIG, probes=32, knobs=knobs, matching=(1 + passing // 100, passing))
        assert plan.scan_tuples == limits.scan_budget(knobs.ef_search, passing, BIG["n_tokens"])
        assert limits.SCAN_TUPLES <= plan.scan_tuples <= limits.MAX_SCAN_TUPLES
    # a half-passing filter: about 4 x ef / 0.5 tokens visited, at least pgvector's default
    assert limits.scan_budget(150, 1_000_000, 2_000_000) == limits.SCAN_TUPLES
    assert limits.scan_budget(1000, 1_000, 2_000_000) == limits.MAX_SCAN_TUPLES
    assert limits.scan_budget(100, 20_000, 2_000_000) == 40_000


def test_options_derive_ef_search_from_candidates_per_token() -> None:
    from lateinteract_pg.search.options import LateOptions

    assert LateOptions.build(10).knobs == default_knobs(10)
    # a ColBERT query's 32 vectors re-score more candidates (the scaling run's measurements)
    assert LateOptions.build(10, 32).knobs == default_knobs(10, 32) == Knobs(150, 150, 384)
    assert LateOptions.build(10, candidates_per_token=60).knobs == Knobs(60, 60, 200)
    assert LateOptions.build(10, candidates_per_token=60, ef_search=20).knobs == Knobs(60, 60, 200)
    assert LateOptions.build(10, ef_search=400).knobs == Knobs(150, 400, 200)
    with pytest.warns(DeprecationWarning, match="rescore_depth"):
        assert LateOptions.build(10, rerank_depth=77).knobs.rescore_depth == 77
