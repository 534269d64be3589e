"""Reusable Keras layers shared by two or more model families."""

from tfrec.layers.embedding import Bias, IdEmbedding
from tfrec.layers.mlp import ACTIVATIONS, mlp_tower

__all__ = ["ACTIVATIONS", "Bias", "IdEmbedding", "mlp_tower"]
