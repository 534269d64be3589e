"""Model families. Importing this package registers every builder."""

from tfrec.models import (
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
