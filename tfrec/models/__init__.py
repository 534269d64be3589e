"""Model families. Importing this package registers every builder."""

from tfrec.models import (
    content_cnn,  # noqa: F401
    gru4rec,  # noqa: F401
    hybrid,  # noqa: F401
    item2vec,  # noqa: F401
    ncf,  # noqa: F401
    vbpr,  # noqa: F401
)
