"""Training glue around ``keras.Model.fit``: the one runner and optimisers.

The runner (`tfrec.training.runner`, also ``tfrec.train`` / ``tfrec.prepare``)
drives every family's recipe (`tfrec.recipes`) the same way.
"""

from tfrec.training.optimizers import OPTIMIZERS, make_optimizer
from tfrec.training.runner import (
    Prepared,
    RunResult,
    evaluate_run,
    load_run,
    prepare,
    read_vocab,
    train,
)

__all__ = [
    "OPTIMIZERS",
    "Prepared",
    "RunResult",
    "evaluate_run",
    "load_run",
    "make_optimizer",
    "prepare",
    "read_vocab",
    "train",
]
