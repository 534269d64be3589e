"""Model families. Importing this package registers every builder."""

from tfrec.models import (
    item2vec,  # noqa: F401
    ncf,  # noqa: F401
)
