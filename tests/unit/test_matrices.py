"""Stage 2's matrices without a database: packing, decoding and scoring against the
reference MaxSim."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lateinteract_pg.matrices import decode_matrices, pack_matrices
from lateinteract_pg.maxsim import maxsim, maxsim_packed
from lateinteract_pg.search.rescore import refine_count


def _documents(seed: int, n: int = 12, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.standard_normal((int(offsets[-1]), dim))
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    return tokens.astype(np.float16), offsets


def test_float16_matrices_round_trip_exactly() -> None:
    tokens, offsets = _documents(1)
    rows = list(enumerate(pack_matrices(tokens, offsets, "float16")))
    packed = decode_matrices(rows, tokens.shape[1], "float16")
    assert np.array_equal(packed.tokens, tokens) and np.array_equal(packed.offsets, offsets)


def test_packed_maxsim_equals_the_reference_per_document() -> None:
    tokens, offsets = _documents(2)
    query = np.random.default_rng(9).standard_normal((32, tokens.shape[1])).astype(np.float32)
    packed = decode_matrices(
        list(enumerate(pack_matrices(tokens, offsets, "float16"))), tokens.shape[1], "float16"
    )
    expected = [maxsim(query, tokens[lo:hi]) for lo, hi in itertools.pairwise(offsets)]
    np.testing.assert_allclose(packed.maxsim(query), expected, rtol=1e-5, atol=1e-4)
    reference = maxsim_packed(query, tokens, offsets)
    np.testing.assert_allclose(reference, expected, rtol=1e-5, atol=1e-4)


def test_int8_matrices_score_within_half_a_percent() -> None:
    tokens, offsets = _documents(3)
    query = np.random.default_rng(4).standard_normal((16, tokens.shape[1])).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    rows = list(enumerate(pack_matrices(tokens, offsets, "int8")))
    assert all(len(b) == (hi - lo) * (tokens.shape[1] + 4)
               for (_, b), lo, hi in zip(rows, offsets[:-1], offsets[1:]))  # fmt: skip
    packed = decode_matrices(rows, tokens.shape[1], "int8")
    exact = maxsim_packed(query, tokens, offsets)
    approx = packed.maxsim(query)
    assert np.abs(approx - exact).max() <= 0.005 * np.abs(exact).max()
    assert not np.array_equal(approx, exact)  # int8 is not float16


@pytest.mark.parametrize("k", [1, 10, 100])
def test_int8_refinement_rescores_more_than_k(k: int) -> None:
    assert refine_count(k) > k
