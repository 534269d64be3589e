"""Training recipes, one module per model family. Importing registers them.

See `tfrec.recipes.base` for what a recipe is; `tfrec.training.runner` drives
every recipe the same way.
"""

from tfrec.recipes import (
    ncf,  # noqa: F401
    wide_deep,  # noqa: F401
)
