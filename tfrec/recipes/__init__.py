"""Training recipes, one module per model family. Importing registers them.

See `tfrec.recipes.base` for what a recipe is; `tfrec.training.runner` drives
every recipe the same way.
"""

from tfrec.recipes import (
    autoencoders,  # noqa: F401
    content_cnn,  # noqa: F401
    gru4rec,  # noqa: F401
    hybrid,  # noqa: F401
    item2vec,  # noqa: F401
    mv_dnn,  # noqa: F401
    ncf,  # noqa: F401
    vbpr,  # noqa: F401
    wide_deep,  # noqa: F401
    youtube,  # noqa: F401
)
