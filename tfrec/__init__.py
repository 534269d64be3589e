"""tfrec: deep-learning recommender models in Keras 3, with verified export.

``import tfrec`` registers every model, custom layer and training recipe, so
``keras.saving.load_model`` reads any run's ``model.keras`` in a fresh process.
"""

from tfrec.console import quiet_environment as _quiet_environment

_quiet_environment(command_only=True)

from tfrec.registry import create_model, list_models, model_info  # noqa: E402

__version__ = "0.1.0"

import tfrec.layers  # noqa: E402,F401  (registers custom layers)
import tfrec.models  # noqa: E402,F401  (registers models and their layers)
from tfrec.training.runner import prepare, train  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "model_info", "prepare", "train"]
