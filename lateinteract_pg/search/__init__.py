"""Searching a collection, one module per step of the way a query goes:

- :mod:`.options`: a late search's options, checked once (:class:`LateOptions`);
- :mod:`.filters`: the metadata filter language and ``where`` fragments, compiled to SQL;
- :mod:`.planner`: the knobs, and the index plan or the exhaustive scan by cost;
- :mod:`.late`: the late tier, running the plan:
  :mod:`.candidates` (stage 1, HNSW probes per query vector, aggregated in SQL) then
  :mod:`.rescore` (stage 2, exact MaxSim of packed matrices), :mod:`.results` (hits);
- :mod:`.dense`: the dense tier (one mean vector per side);
- :mod:`.hybrid`: the late list fused with full text;
- :mod:`.rerank`: the cross-encoder tier over the late tier's best;
- :mod:`.passages`: passages counted for their document;
- :mod:`.explain`: why a document scores what it does.
"""
