"""Training glue around ``keras.Model.fit``: optimisers, callbacks, run directories."""

from tfrec.training.loop import (
    EvaluationCallback,
    RunResult,
    TrainConfig,
    evaluate_model,
    load_run,
    ranking_protocols,
    train,
)
from tfrec.training.optimizers import OPTIMIZERS, make_optimizer
from tfrec.training.scoring import feed_scorer, keras_scorer, output_name

__all__ = [
    "OPTIMIZERS",
    "EvaluationCallback",
    "RunResult",
    "TrainConfig",
    "evaluate_model",
    "feed_scorer",
    "keras_scorer",
    "load_run",
    "make_optimizer",
    "output_name",
    "ranking_protocols",
    "train",
]
