"""Ranking and rating metrics and evaluation protocols.

One of each shared piece: the full-ranking core (:mod:`.ranking`), the scorer
adapter (:mod:`.scoring`) and the popularity baseline (:func:`item_popularity`).
"""

from tfrec.evaluation.metrics import (
    auc,
    log_loss,
    mae,
    ranking_metric_rows,
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
from tfrec.evaluation.ranking import csr_rows, full_ranking, top_k
from tfrec.evaluation.scoring import feed_scorer, keras_scorer, output_name

__all__ = [
    "FullRanking",
    "SampledRanking",
    "auc",
    "csr_rows",
    "evaluate_split",
    "feed_scorer",
    "full_ranking",
    "item_popularity",
    "keras_scorer",
    "log_loss",
    "mae",
    "output_name",
    "popularity_scorer",
    "ranking_metric_rows",
    "ranking_metric_sums",
    "ranking_metrics",
    "ranks_of_relevant",
    "rmse",
    "split_protocols",
    "top_k",
]
