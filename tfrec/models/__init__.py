"""Model families. Importing this package registers every builder."""

from tfrec.models import autoencoders  # noqa: F401
from tfrec.models import ncf  # noqa: F401
from tfrec.models import mv_dnn  # noqa: F401
from tfrec.models import youtube  # noqa: F401
from tfrec.models import wide_deep  # noqa: F401
