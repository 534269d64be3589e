"""Training glue around ``keras.Model.fit``: the one runner, optimisers, scorers.

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
from tfrec.training.scoring import feed_scorer, keras_scorer, output_name

__all__ = [
    "OPTIMIZERS",
    "Prepared",
    "RunResult",
    "evaluate_run",
    "feed_scorer",
    "keras_scorer",
    "load_run",
    "make_optimizer",
    "output_name",
    "prepare",
    "read_vocab",
    "train",
]
