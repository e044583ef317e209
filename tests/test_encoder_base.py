"""The encoders package's shared parts, without a database or real weights: the batching
loop on a fake model, import hygiene (no torch on import, no import cycles)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lateinteract_pg
from lateinteract_pg.encoders.base import Row, pad_rows, run_batches

PACKAGE = Path(lateinteract_pg.__file__).parent / "encoders"


def test_pad_rows_right_pads_with_mask_and_types() -> None:
    padded = pad_rows(
        [Row([7, 8], token_type_ids=[0, 1]), Row([9, 10, 11], attention_mask=[1, 1, 0])],
        pad_id=-1,
    )
    assert padded["input_ids"].tolist() == [[7, 8, -1], [9, 10, 11]]
    assert padded["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 0]]
    assert padded["token_type_ids"].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert "token_type_ids" not in pad_rows([Row([1])], pad_id=0)
    assert pad_rows([], pad_id=0)["input_ids"].shape == (0, 0)


class _FakeModel:
    """Per token: (id, mask, position, batch width); records each batch it sees."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []

    def __call__(self, inputs: dict) -> object:
        import torch

        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert ids.dtype == mask.dtype == torch.int64 and ids.shape == mask.shape
        self.batches.append(ids.tolist())
        batch, width = ids.shape
        position = torch.arange(width).expand(batch, width)
        return torch.stack([ids, mask, position, torch.full_like(ids, width)], dim=-1)


def test_run_batches_restores_order_and_strips_padding() -> None:
    pytest.importorskip("torch")
    rows = [
        Row([1, 2]),
        Row([3, 4, 5, 6, 7]),
        Row([8]),
        Row([9, 10, 11], attention_mask=[1, 1, 0], keep=[True, False, True]),
        Row([12, 13, 14, 15]),
    ]
    model = _FakeModel()
    out = run_batches(rows, model, batch_size=2, device="cpu", pad_id=0)
    # longest first, so a batch pads little: widths 5, 3, 1
    assert model.batches == [
        [[3, 4, 5, 6, 7], [12, 13, 14, 15, 0]],
        [[9, 10, 11], [1, 2, 0]],
        [[8]],
    ]
    for row, got in zip(rows, out, strict=True):
        assert got.dtype == np.float32 and got.flags.c_contiguous
        kept = [i for i, k in enumerate(row.keep or [True] * len(row.input_ids)) if k]
        assert got[:, 0].tolist() == [row.input_ids[i] for i in kept]  # in order, no padding
        assert got[:, 2].tolist() == kept
    assert out[3][:, 1].tolist() == [1, 0]  # the masked token kept, as asked
    assert set(out[0][:, 3].tolist()) == {3} and set(out[1][:, 3].tolist()) == {5}
    assert run_batches([], model, batch_size=2, device="cpu", pad_id=0) == []


def test_run_batches_one_output_per_row() -> None:
    torch = pytest.importorskip("torch")
    rows = [Row([1] * n) for n in (3, 1, 4, 2)]
    out = run_batches(
        rows,
        lambda inputs: inputs["attention_mask"].sum(dim=1).to(torch.float64),
        batch_size=3,
        device="cpu",
        pad_id=0,
        per_token=False,
    )
    assert [float(x) for x in out] == [3.0, 1.0, 4.0, 2.0]
    assert all(x.dtype == np.float32 and x.shape == () for x in out)


def test_importing_the_package_does_not_import_torch() -> None:
    code = (
        "import sys, lateinteract_pg, lateinteract_pg.encoders, lateinteract_pg.cli; "
        "heavy = {'torch', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parents[1])


def _module_imports(path: Path) -> set[str]:
    """Sibling modules of the encoders package that ``path`` imports at module level."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level == 1:
            found.update([module.split(".")[0]] if module else [a.name for a in node.names])
        elif module.startswith("lateinteract_pg.encoders."):
            found.add(module.split(".")[2])
    return found


def test_encoders_import_no_cycle() -> None:
    graph = {p.stem: _module_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert {"base", "token", "colbert", "cross", "loading"} <= set(graph)
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dependency in graph.get(module, ()):
            visit(dependency, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
