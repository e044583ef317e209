"""Text encoders: token vectors for late interaction, and cross-encoder scores.

The modules follow a model's life: :mod:`.sources` finds its weights (the packaged
default, a folder, a hub name); :mod:`.base` holds what every model shares (the
:class:`Encoder` protocol, fingerprints, the one batching loop); :mod:`.token`,
:mod:`.colbert` (with :mod:`.colbert_formats` reading checkpoints) and :mod:`.cross` are the
models; :mod:`.loading` picks one by name.

torch and transformers are an optional extra (``pip install 'lateinteract-pg[encoders]'``),
imported only when a model is built: importing this package does not import them.
"""

from .base import Encoder
from .colbert import ColBERTEncoder
from .cross import CrossEncoder
from .loading import load_encoder
from .sources import default_model_path
from .token import TokenEncoder

__all__ = [
    "ColBERTEncoder",
    "CrossEncoder",
    "Encoder",
    "TokenEncoder",
    "default_model_path",
    "load_encoder",
]
