"""Model families. Importing this package registers every builder."""

from tfrec.models import ncf  # noqa: F401
from tfrec.models import vbpr  # noqa: F401
