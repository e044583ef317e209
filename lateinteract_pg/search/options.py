"""The options of a late-tier search, checked once into one frozen object."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from .. import limits
from ..errors import InvalidInput
from ..types import PlanKind
from ..validation import check_int, check_k
from .candidates import Imputation
from .planner import Knobs, default_knobs

__all__ = ["OPTION_NAMES", "LateOptions", "RescoreFrom", "check_option_names"]

RescoreFrom = Literal["documents", "tokens"]


@dataclass(frozen=True)
class LateOptions:
    """How the late tier searches for the top ``k``.

    - ``knobs``: ``candidates_per_token`` (k', the nearest document tokens per probe),
      ``ef_search`` (the HNSW scan's) and ``rescore_depth`` (N, the candidate documents stage 2
      re-scores exactly; ``rerank_depth`` is its deprecated name), defaults derived from k;
    - ``exact``: score every document; ``plan``: force ``"index"`` or ``"exhaustive"``
      (None: the cheaper by estimated cost);
    - ``merge_threshold``: below 1, probe once for query vectors at least this similar
      (cosine); ``imputation``: what a probe that missed a document adds to its stage-1 score,
      ``"zero"`` or ``"kth"`` (its k'-th similarity, as XTR);
    - ``rescore_from``: stage 2 from the per-document matrices (``"documents"``) or the token
      rows (``"tokens"``, to compare the two).
    """

    k: int
    knobs: Knobs
    exact: bool = False
    plan: PlanKind | None = None
    merge_threshold: float = 1.0
    imputation: Imputation = "zero"
    rescore_from: RescoreFrom = "documents"

    @classmethod
    def build(
        cls,
        k: Any,
        query_vectors: int = 1,
        *,
        exact: bool = False,
        candidates_per_token: int | None = None,
        ef_search: int | None = None,
        rescore_depth: int | None = None,
        merge_threshold: float = 1.0,
        imputation: Imputation = "zero",
        plan: PlanKind | None = None,
        rescore_from: RescoreFrom = "documents",
        rerank_depth: int | None = None,
    ) -> LateOptions:
        """Check every option; InvalidInput names the first bad one. Knobs left out get
        the defaults for ``k`` and a query of ``query_vectors`` vectors.

        ``rerank_depth`` is the deprecated name of ``rescore_depth`` (kept one release).
        """
        k = check_k(k)
        if rerank_depth is not None:
            warnings.warn(
                "rerank_depth is deprecated: use rescore_depth (the cross-encoder tier is the "
                "only 'rerank')",
                DeprecationWarning,
                stacklevel=3,
            )
            if rescore_depth is None:
                rescore_depth = rerank_depth
        defaults = default_knobs(k, query_vectors)
        top = limits.MAX_EF_SEARCH
        per_token = (
            defaults.candidates_per_token
            if candidates_per_token is None
            else check_int("candidates_per_token", candidates_per_token, 1, top)
        )
        # ef_search defaults to k' (README's knob table; SQL search_knobs() does the same)
        ef = per_token if ef_search is None else check_int("ef_search", ef_search, 1, top)
        depth = (
            defaults.rescore_depth
            if rescore_depth is None
            else check_int("rescore_depth", rescore_depth, 1, limits.MAX_K)
        )
        if imputation not in ("zero", "kth"):
            raise InvalidInput(f"imputation must be 'zero' or 'kth', got {imputation!r}")
        if plan not in (None, "index", "exhaustive"):
            raise InvalidInput(f"plan must be 'index', 'exhaustive' or None, got {plan!r}")
        if rescore_from not in ("documents", "tokens"):
            raise InvalidInput(
                f"rescore_from must be 'documents' or 'tokens', got {rescore_from!r}"
            )
        if (
            isinstance(merge_threshold, bool)
            or not isinstance(merge_threshold, (int, float))
            or not 0.0 < merge_threshold <= 1.0
        ):
            raise InvalidInput(f"merge_threshold must be in (0, 1], got {merge_threshold!r}")
        # an HNSW scan yields at most ef_search rows
        knobs = Knobs(per_token, max(per_token, ef), depth)
        return cls(
            k, knobs, bool(exact), plan, float(merge_threshold), imputation, rescore_from
        )


# the keyword options LateOptions.build takes
OPTION_NAMES = frozenset(inspect.signature(LateOptions.build).parameters) - {
    "cls",
    "k",
    "query_vectors",
}


def check_option_names(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if every name is one :meth:`LateOptions.build` takes."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise InvalidInput(
            f"unknown search options {unknown}; the options are {sorted(OPTION_NAMES)}"
        )
    return options
