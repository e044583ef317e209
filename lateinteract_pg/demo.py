"""The demo: index the standard library's documentation, then answer a few questions."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .corpus import stdlib_passages
from .errors import CollectionExists, EncoderMismatch
from .store import connect

__all__ = ["DEFAULT_QUESTIONS", "run_demo"]

DEFAULT_QUESTIONS = [
    "How do I run a shell command and capture its output?",
    "parse a JSON string into a Python dictionary",
    "What happens when an exception is raised inside a with statement?",
    "count how many times each word occurs in a list",
    "format a date and time as a string",
]


DEMO_DIM = 384  # a rotation keeps MiniLM's geometry; 128-d random maps measurably hurt
# ColBERT's [MASK] expansion vectors are near-duplicates: probe once per group of them
# (measured on two demo questions: 32 query vectors -> 18 and 13 probes)
MERGE_THRESHOLD = 0.95
_TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                    "special_tokens_map.json")  # fmt: skip
NOT_TRAINED = (
    "NOTE: this is not a trained ColBERT. It is all-MiniLM-L6-v2 with a fixed random "
    "orthogonal {dim}-d projection, saved in the Stanford ColBERT format so the demo runs "
    "offline with ColBERT's query and document handling. Pass a real checkpoint with "
    "--model (a hub name such as colbert-ir/colbertv2.0, or a local folder) for "
    "ColBERT-quality results."
)


def build_demo_checkpoint(folder: Path, dim: int = DEMO_DIM) -> Path:
    """Write a Stanford-format ColBERT checkpoint from the packaged MiniLM weights.

    The projection is a seeded random orthogonal map (at dim 384 a rotation, which keeps
    MiniLM's inner products exactly); nothing is trained. Idempotent: an existing checkpoint
    in ``folder`` is reused.
    """
    from safetensors.torch import load_file, save_file

    from .encoders import default_model_path
    from .encoders.base import import_backend

    torch, _ = import_backend("the demo checkpoint")
    if (folder / "artifact.metadata").exists():
        return folder
    source = Path(default_model_path())
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in _TOKENIZER_FILES:
        shutil.copy(source / name, staging / name)
    state = load_file(str(source / "model.safetensors"))
    hidden = int(json.loads((source / "config.json").read_text())["hidden_size"])
    generator = torch.Generator().manual_seed(20261125)
    basis, _ = torch.linalg.qr(torch.randn(hidden, dim, generator=generator))
    state = {f"bert.{k}": v for k, v in state.items() if not k.endswith("position_ids")}
    state["linear.weight"] = basis.T.contiguous()
    save_file(state, str(staging / "model.safetensors"))
    metadata = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 32,
                "doc_maxlen": 256, "dim": dim, "similarity": "cosine",
                "attend_to_mask_tokens": False, "mask_punctuation": True}  # fmt: skip
    (staging / "artifact.metadata").write_text(json.dumps(metadata, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def _demo_model_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lateinteract_pg")) / "minilm-colbert-demo"


def run_demo(
    *,
    dsn: str | None = None,
    schema: str = "lateinteract",
    collection: str = "python-docs",
    reset: bool = False,
    limit: int | None = None,
    questions: list[str] | None = None,
    k: int = 3,
    model: str | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Build (or reuse) the demo collection and print the answers to ``questions``.

    ``model``: a ColBERT checkpoint (hub name or folder); by default a ColBERT-format
    checkpoint built offline from the packaged MiniLM weights (not a trained ColBERT).
    """
    from .encoders import ColBERTEncoder

    started = time.perf_counter()
    if model is None:
        encoder = ColBERTEncoder.from_pretrained(str(build_demo_checkpoint(_demo_model_dir())))
        echo(NOT_TRAINED.format(dim=encoder.dim))
    else:
        encoder = ColBERTEncoder.from_pretrained(model)
    echo(f"encoder: ColBERT {encoder.settings()['model']} ({encoder.dim}-d)")
    with connect(dsn, schema=schema) as store:
        echo(f"database: {store.conn.info.host} / {store.conn.info.dbname} (schema {schema})")
        if reset and collection in store:
            store.drop_collection(collection)
        try:
            coll = store.collection(collection, encoder=encoder)
        except (CollectionExists, EncoderMismatch):
            echo(f"collection {collection!r} was built by another encoder: rebuilding it")
            store.drop_collection(collection)
            coll = store.collection(collection, encoder=encoder)
        if len(coll) == 0:
            passages = stdlib_passages()[:limit]
            echo(f"indexing {len(passages)} passages of the Python standard library docs ...")
            t0 = time.perf_counter()
            vectors = encoder.encode_documents([text for _, text in passages], progress=True)
            t1 = time.perf_counter()
            tokens = coll.add_embeddings(
                [pid for pid, _ in passages],
                vectors,
                texts=[text for _, text in passages],
                metadata=[{"source": pid.split(":")[0]} for pid, _ in passages],
            )
            t2 = time.perf_counter()
            echo(
                f"encoded {tokens} token vectors in {t1 - t0:.1f} s; "
                f"stored and indexed them in {t2 - t1:.1f} s"
            )
        else:
            echo(f"reusing {len(coll)} indexed passages (--reset rebuilds)")
        for question in questions or DEFAULT_QUESTIONS:
            t0 = time.perf_counter()
            query = encoder.encode_queries([question])[0]
            t1 = time.perf_counter()
            hits = coll.search_embeddings(query, k=k, merge_threshold=MERGE_THRESHOLD)
            t2 = time.perf_counter()
            stats = coll.last_search
            plan = stats.plan if stats else "?"
            echo(
                f"\nQ: {question}\n   (encode {1000 * (t1 - t0):.0f} ms, "
                f"search {1000 * (t2 - t1):.0f} ms, {plan} plan)"
            )
            for rank, hit in enumerate(hits, 1):
                snippet = " ".join((hit.text or "").split())[:160]
                echo(f"  {rank}. {hit.id}  score {hit.score:.2f}\n     {snippet}")
    echo(f"\ndone in {time.perf_counter() - started:.1f} s")
