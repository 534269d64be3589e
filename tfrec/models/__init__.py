"""Model families. Importing this package registers every builder."""

from tfrec.models import (
    hybrid,  # noqa: F401
    ncf,  # noqa: F401
    vbpr,  # noqa: F401
)
