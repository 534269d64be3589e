"""Model families. Importing this package registers every builder."""

from tfrec.models import ncf  # noqa: F401
