"""Token rows as a binary COPY stream, built with numpy rather than row by row in Python.

One row: (collection_id int4, doc_id int8, position int4, embedding halfvec, tenant text), in
PostgreSQL's binary COPY format; pgvector's halfvec is an int16 dim, an unused int16, then
dim big-endian float16 values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .validation import Batch

__all__ = ["pack_token_rows", "token_row_dtype"]

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"


def token_row_dtype(dim: int, tenant_bytes: int = 0) -> np.dtype:
    """One binary COPY row of (collection_id int4, doc_id int8, position int4, halfvec,
    tenant text): the tenant's UTF-8 bytes, none for NULL."""
    tenant = [("tenant", f"S{tenant_bytes}")] if tenant_bytes else []
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("len_collection", ">i4"),
            ("collection_id", ">i4"),
            ("len_doc", ">i4"),
            ("doc_id", ">i8"),
            ("len_pos", ">i4"),
            ("position", ">i4"),
            ("len_vec", ">i4"),
            ("vec_dim", ">i2"),
            ("vec_unused", ">i2"),
            ("vec", ">f2", (dim,)),
            ("len_tenant", ">i4"),
            *tenant,
        ]
    )


def pack_token_rows(
    collection_id: int,
    doc_ids: np.ndarray,
    batch: Batch,
    rows_per_chunk: int,
    tenant: str | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Binary COPY payload for the batch's token rows, in chunks of (rows, bytes).

    The whole stream (header, rows, trailer) is built with numpy, not row by row in Python.
    """
    dim = batch.tokens.shape[1]
    tenant_bytes = b"" if tenant is None else tenant.encode("utf-8")
    dtype = token_row_dtype(dim, len(tenant_bytes))
    total = len(batch.tokens)
    doc_of_token = np.repeat(np.asarray(doc_ids, dtype=np.int64), batch.lengths)
    position = np.arange(total, dtype=np.int64) - np.repeat(batch.offsets[:-1], batch.lengths)
    chunks = max(1, math.ceil(total / rows_per_chunk))
    for c in range(chunks):
        lo, hi = c * rows_per_chunk, min(total, (c + 1) * rows_per_chunk)
        rows = np.empty(hi - lo, dtype=dtype)
        rows["nfields"] = 5
        rows["len_collection"] = 4
        rows["collection_id"] = collection_id
        rows["len_doc"] = 8
        rows["doc_id"] = doc_of_token[lo:hi]
        rows["len_pos"] = 4
        rows["position"] = position[lo:hi]
        rows["len_vec"] = 4 + 2 * dim
        rows["vec_dim"] = dim
        rows["vec_unused"] = 0
        rows["vec"] = batch.tokens[lo:hi]
        rows["len_tenant"] = -1 if tenant is None else len(tenant_bytes)
        if tenant_bytes:
            rows["tenant"] = tenant_bytes
        payload = rows.tobytes()
        if c == 0:
            payload = COPY_SIGNATURE + payload
        if c == chunks - 1:
            payload += COPY_TRAILER
        yield hi - lo, payload
