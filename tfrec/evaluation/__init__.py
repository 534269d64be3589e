"""Ranking and rating metrics and evaluation protocols."""

from tfrec.evaluation.metrics import (
    auc,
    log_loss,
    mae,
    ranking_metric_sums,
    ranking_metrics,
    ranks_of_relevant,
    rmse,
)
from tfrec.evaluation.protocols import (
    FullRanking,
    SampledRanking,
    evaluate_split,
    item_popularity,
    popularity_scorer,
    split_protocols,
)

__all__ = [
    "FullRanking",
    "SampledRanking",
    "auc",
    "evaluate_split",
    "item_popularity",
    "log_loss",
    "mae",
    "popularity_scorer",
    "ranking_metric_sums",
    "ranking_metrics",
    "ranks_of_relevant",
    "rmse",
    "split_protocols",
]
