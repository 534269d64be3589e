"""Model families. Importing this package registers every builder."""

from tfrec.models import (
    gru4rec,  # noqa: F401
    item2vec,  # noqa: F401
    ncf,  # noqa: F401
)
