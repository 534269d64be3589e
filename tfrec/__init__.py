"""tfrec: deep-learning recommender models in Keras 3, with verified export."""

from tfrec.registry import create_model, list_models, model_info

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "model_info"]
