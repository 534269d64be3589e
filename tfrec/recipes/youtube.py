"""Training recipe of the YouTube DNN: candidate generation, then ranking.

Reference: Covington, Adams, Sargin. "Deep Neural Networks for YouTube
Recommendations". RecSys 2016.

Two stages, each resumable, for both registered names (``youtube_candidate``,
``youtube_ranking``); the run serves both graphs:

1. ``candidate``: `youtube_candidate` learns next-watch prediction over the
   whole catalogue with sampled softmax (Sec. 3.1; :class:`SampledSoftmaxTask`:
   ``num_sampled`` negatives per batch from the training unigrams raised to
   ``distortion``, logits corrected by log Q) on rolled-back examples (Sec. 3.5:
   each example's history holds only earlier watches; ``example_age`` is the
   time before the training window's end, served as 0).
2. ``ranking``: `youtube_ranking` learns weighted logistic regression (Sec. 4.2;
   :class:`WeightedLogisticTask`): positives weighted by watch time (the rating
   stands in), negatives by 1. MovieLens has no impressions, so negatives are
   "impressed but not watched" stand-ins drawn from the trained candidate
   model's top ``impression_top`` items for each rolled-back request
   (:func:`impression_negatives`), and the candidate model's score is a ranking
   feature (Sec. 4.1).

With ``refit=true`` both stages run again on all training data (validation
part included) after the validated pass, and those models are served.

Validation (every epoch, early stopping): each user's latest training
interaction is the validation next item (`tfrec.recipes.histories`); the
candidate stage watches ``recall@<largest k>`` of retrieval, the ranking stage
``ndcg@<first k>`` of the two-stage pipeline. The test next items are read once,
at the end. Every epoch's data is a function of (seed, epoch) and the samplers
of (seed, step), so a resumed run ends with the same weights.

``tfrec recommend``: ``youtube_ranking`` runs the two-stage pipeline (retrieve
``num_candidates`` unseen items, order them by the ranking model's odds);
``youtube_candidate`` returns the retrieval top-K.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tfrec.data.histories import (
    SECONDS_PER_DAY,
    ContentTables,
    HistoryExamples,
    TimeSplit,
    rolled_back_examples,
)
from tfrec.recipes import histories as hx
from tfrec.recipes import interactions as ix
from tfrec.recipes.base import (
    Preset,
    Recipe,
    ServingGraph,
    StagePlan,
    TrainSettings,
    register_recipe,
)
from tfrec.registry import create_model
from tfrec.training.optimizers import make_optimizer
from tfrec.youtube_serving import (
    PipelineTables,
    _select,
    candidate_features,
    ranking_features,
)

# ------------------------------------------------------------------ epoch data


class EpochExamples:
    """In-memory ``(features, labels)`` in a fresh order each epoch, a function
    of ``(seed, epoch)`` (so a resumed run sees the same batches)."""

    def __init__(self, features: Mapping, labels, *, seed: int = 0, shuffle=True):
        self.features = {k: np.asarray(v) for k, v in features.items()}
        self.label_dict = isinstance(labels, Mapping)
        self.labels = (
            {k: np.asarray(v) for k, v in labels.items()} if self.label_dict
            else {"labels": np.asarray(labels)}
        )
        lengths = {k: len(v) for k, v in {**self.features, **self.labels}.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Feature and label arrays differ in length: {lengths}")
        self.n = next(iter(lengths.values()))
        if self.n == 0:
            raise ValueError("No training examples: the feature arrays are empty.")
        self.seed, self.shuffle, self.epoch = int(seed), shuffle, 0

    def __len__(self) -> int:
        return self.n

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.n)


def epoch_dataset(source: EpochExamples, batch_size: int) -> tf.data.Dataset:
    """Batches of ``source`` in epoch ``source.epoch``'s order (each pass draws
    the next epoch; ``SamplerEpochCallback(source)`` pins it to ``fit``'s)."""
    fkeys, lkeys = sorted(source.features), sorted(source.labels)
    flat = [source.features[k] for k in fkeys] + [source.labels[k] for k in lkeys]
    dtypes = [tf.as_dtype(a.dtype) for a in flat]

    def next_epoch():
        epoch = source.epoch
        source.epoch += 1
        order = source.order(epoch)
        return [a[order] for a in flat]

    def to_batches(*arrays):
        arrays = [
            tf.ensure_shape(t, (None,) + a.shape[1:])
            for t, a in zip(arrays, flat, strict=True)
        ]
        x = dict(zip(fkeys, arrays[: len(fkeys)], strict=True))
        ys = dict(zip(lkeys, arrays[len(fkeys):], strict=True))
        y = ys if source.label_dict else ys["labels"]
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    ds = (
        tf.data.Dataset.from_tensors(0)
        .map(lambda _: tuple(tf.numpy_function(next_epoch, [], dtypes)))
        .flat_map(to_batches)
    )
    steps = -(-len(source) // batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(
        tf.data.AUTOTUNE
    )


def eager_call(model, feats: Mapping, output: str, chunk: int = 8192) -> np.ndarray:
    """``model(feats)[output]`` in chunks, eagerly (no ``predict`` retracing)."""
    n = len(next(iter(feats.values())))
    parts = [
        np.asarray(model({k: v[a:a + chunk] for k, v in feats.items()})[output])
        for a in range(0, n, chunk)
    ]
    return np.concatenate(parts)


def step_seed(seed: int, iterations) -> tf.Tensor:
    """A stateless-RNG seed from the run's seed and the optimizer step."""
    return tf.stack([tf.constant(int(seed), tf.int64), tf.cast(iterations, tf.int64)])


# ------------------------------------------------------------- sampled softmax


def _positive_int(name, value, minimum=1):
    if (
        not isinstance(value, (int, np.integer))
        or isinstance(value, bool)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def sampled_softmax_loss(
    query: tf.Tensor,
    item_embeddings: tf.Tensor,
    labels: tf.Tensor,
    sampled_values,
    *,
    remove_accidental_hits: bool = True,
) -> tf.Tensor:
    """Per-example sampled softmax loss with logQ correction (no softmax bias).

    ``tf.nn.sampled_softmax_loss`` with ``sampled_values = (sampled ids,
    expected count of each true label, expected count of each sample)``: logits
    ``<u, v_j> - log Q(j)`` over the true class and the samples, samples equal to
    the true class removed (``remove_accidental_hits``).

    Returns:
        ``[B]`` float32 losses.
    """
    num_items = tf.shape(item_embeddings)[0]
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1, 1])
    return tf.nn.sampled_softmax_loss(
        weights=item_embeddings,
        biases=tf.zeros([num_items], item_embeddings.dtype),
        labels=labels,
        inputs=query,
        num_sampled=int(sampled_values[0].shape[0]),
        num_classes=int(item_embeddings.shape[0]),
        sampled_values=sampled_values,
        remove_accidental_hits=remove_accidental_hits,
    )


def inclusion_probabilities(p: np.ndarray, num_sampled: int) -> np.ndarray:
    """Probability that each class is among ``num_sampled`` distinct draws from
    ``p``: ``1 - (1 - p)^T`` with ``T`` the expected number of tries, solved
    from ``sum = num_sampled`` (the expected counts TF's unique samplers
    report)."""
    p = np.asarray(p, np.float64)
    log1m = np.log1p(-np.minimum(p, 1 - 1e-15))

    def total(t):
        return float(np.sum(-np.expm1(t * log1m)))

    lo, hi = float(num_sampled), float(num_sampled)
    while total(hi) < num_sampled and hi < 1e15:
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) < num_sampled else (lo, mid)
    return -np.expm1(hi * log1m)


class SampledSoftmaxTask(keras.Model):
    """Training wrapper: next-watch prediction with sampled softmax (Sec. 3.1).

    Holds a `youtube_candidate` model; ``fit`` on ``(features, item_id)`` batches
    where ``features`` are the query tower's inputs. Each step draws
    `num_sampled` distinct negatives (shared by the batch) from ``unigrams``
    raised to `distortion` (uniform when None) by Gumbel top-k with a
    stateless seed ``(seed, step)``, and the logits are corrected by the log of
    each class's inclusion probability so the loss estimates the full softmax.

    Args:
        model: a `youtube_candidate` model (its weights are trained in place).
        num_sampled: negatives per batch.
        unigrams: per-item counts for the sampler.
        distortion: exponent applied to `unigrams`.
        seed: seed of the sampler.
    """

    def __init__(self, model, *, num_sampled=256, unigrams=None, distortion=0.75,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.query_tower = model.get_layer("query_tower")
        self.table = model.get_layer("item_tower").get_layer("softmax_embedding")
        self.num_items = int(self.table.num_ids)
        self.num_sampled = _positive_int("num_sampled", num_sampled)
        if self.num_sampled >= self.num_items:
            raise ValueError(
                f"`num_sampled` must be < num_items ({self.num_items}). Received: "
                f"num_sampled={num_sampled}"
            )
        if unigrams is None:
            unigrams = np.ones(self.num_items)
        unigrams = np.asarray(unigrams, np.float64)
        if unigrams.shape != (self.num_items,) or (unigrams < 0).any():
            raise ValueError(
                f"`unigrams` must be {self.num_items} non-negative counts. Received "
                f"shape {unigrams.shape}."
            )
        self.distortion = float(distortion)
        q = (unigrams + 1e-3) ** self.distortion
        q = q / q.sum()
        self.seed = int(seed)
        self.log_q = tf.constant(np.log(q), tf.float32)
        self.expected = tf.constant(
            inclusion_probabilities(q, self.num_sampled), tf.float32
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True  # wraps built functional models (BackupAndRestore)

    def call(self, inputs, training=False):
        return self.query_tower(inputs, training=training)

    def sample(self, labels, step):
        """``(sampled ids, true expected counts, sampled expected counts)``."""
        u = tf.random.stateless_uniform(
            [self.num_items], seed=step_seed(self.seed, step), minval=1e-20, maxval=1.0
        )
        gumbel = -tf.math.log(-tf.math.log(u))
        _, ids = tf.math.top_k(self.log_q + gumbel, k=self.num_sampled)
        labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
        true_expected = tf.gather(self.expected, labels)[:, None]
        return tf.cast(ids, tf.int64), true_expected, tf.gather(self.expected, ids)

    def train_step(self, data):
        x, labels = data
        sampled = self.sample(labels, self.optimizer.iterations)
        with tf.GradientTape() as tape:
            u = tf.cast(self.query_tower(x, training=True)["query_embedding"], tf.float32)
            loss = tf.reduce_mean(
                sampled_softmax_loss(u, self.table.embeddings, labels, sampled)
            )
            if self.model.losses:
                loss += tf.add_n(self.model.losses)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling (mixed precision)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


# --------------------------------------------------------------------- ranking


def weighted_logistic_loss(labels, logits, weights) -> tf.Tensor:
    """Per-example weighted logistic loss ``w * CE(y, sigmoid(logit))``.

    Covington et al. Sec. 4.2: positives weighted by watch time, negatives by 1;
    the learned odds ``exp(logit)`` then approximate the expected watch time.
    """
    labels = tf.cast(labels, tf.float32)
    return tf.cast(weights, tf.float32) * tf.nn.sigmoid_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)
    )


class WeightedLogisticTask(keras.Model):
    """Training wrapper for `youtube_ranking`: weighted logistic regression.

    ``fit`` on ``(features, {"label": 0/1, "weight": w})`` batches; the loss is
    ``sum(w * CE) / batch_size``.
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.logit_model = keras.Model(
            model.input, model.get_layer("ranking_logit").output
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True  # wraps built functional models (BackupAndRestore)

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            logits = self.logit_model(x, training=True)
            loss = tf.reduce_mean(
                weighted_logistic_loss(y["label"], logits, y["weight"])
            )
            if self.model.losses:
                loss += tf.add_n(self.model.losses)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling (mixed precision)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


# ---------------------------------------------------------------- training data


def candidate_training_data(split: TimeSplit, content: ContentTables,
                            examples: HistoryExamples):
    """Query-tower inputs and next-item labels of rolled-back examples."""
    end = split.train["timestamp"].max()
    feats = candidate_features(
        examples.item_history,
        content.item_genres,
        content.demographics(examples.user_id),
        example_age=(end - examples.timestamp) / SECONDS_PER_DAY,
    )
    return feats, examples.item_id


def candidate_queries(candidate_model, split, content, examples) -> np.ndarray:
    """Query embeddings of rolled-back examples as served (example age 0)."""
    feats, labels = candidate_training_data(split, content, examples)
    tower = candidate_model.get_layer("query_tower")
    feats["example_age"] = np.zeros(len(labels), np.float32)
    return eager_call(tower, _select(feats, tower.input), "query_embedding")


def impression_negatives(
    candidate_model,
    split: TimeSplit,
    content: ContentTables,
    examples: HistoryExamples,
    *,
    num_negatives: int = 4,
    top: int = 100,
    seed: int = 0,
    chunk: int = 8192,
) -> np.ndarray:
    """Stand-in for "impressed but not watched": for each example, negatives
    drawn uniformly from the candidate generator's top-`top` items for that
    rolled-back request, among the items the user never watched in training
    (so a later watch is never a negative). Returns ``[n, num_negatives]``."""
    from tfrec.models.youtube import item_table

    rng = np.random.default_rng(seed)
    labels = examples.item_id
    q = candidate_queries(candidate_model, split, content, examples)
    table = item_table(candidate_model)
    top = max(1, min(int(top), split.num_items - 1))
    indptr, indices = split.train_csr()
    out = np.empty((len(labels), num_negatives), np.int64)
    for a in range(0, len(labels), chunk):
        s = q[a:a + chunk] @ table.T
        users = examples.user_id[a:a + chunk]
        lengths = np.diff(indptr)[users]
        rows = np.repeat(np.arange(len(users)), lengths)
        cols = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users])
        s[rows, cols] = -np.inf  # watched at some time: not an "unwatched" impression
        best = np.argpartition(-s, top, axis=1)[:, :top]
        pick = rng.integers(0, top, (len(s), num_negatives))
        out[a:a + chunk] = np.take_along_axis(best, pick, axis=1)
    return out


def ranking_training_data(
    split: TimeSplit,
    content: ContentTables,
    examples: HistoryExamples,
    *,
    num_negatives: int = 4,
    negatives: np.ndarray | None = None,
    candidate_model=None,
    seed: int = 0,
):
    """Positives (weight = rating, the watch-time proxy) plus negatives (weight
    1), all with rolled-back features; with `candidate_model`, also the
    ``candidate_score`` of each pair (query at the example's time . item).

    ``negatives`` ``[n, num_negatives]`` gives the negatives (for example the
    candidate generator's "impressions", :func:`impression_negatives`); by
    default they are drawn in proportion to training popularity.
    """
    rng = np.random.default_rng(seed)
    n = len(examples)
    if negatives is None:
        counts = np.bincount(split.train["item_id"], minlength=split.num_items)
        p = counts / counts.sum()
        neg = rng.choice(split.num_items, size=(n, num_negatives), p=p)
    else:
        neg = np.array(negatives, np.int64)
        if neg.shape != (n, num_negatives):
            raise ValueError(
                f"`negatives` must be [{n}, {num_negatives}]. Received {neg.shape}."
            )
    same = neg == examples.item_id[:, None]
    neg[same] = (neg[same] + 1) % split.num_items
    rows = np.concatenate([np.arange(n), np.repeat(np.arange(n), num_negatives)])
    items = np.concatenate([examples.item_id, neg.reshape(-1)])
    label = np.concatenate([np.ones(n), np.zeros(n * num_negatives)]).astype(np.float32)
    weight = np.where(label > 0, examples.rating[rows], 1.0).astype(np.float32)
    scores = None
    if candidate_model is not None:
        from tfrec.models.youtube import item_table

        q = candidate_queries(candidate_model, split, content, examples)
        scores = (q[rows] * item_table(candidate_model)[items]).sum(1)
    feats = ranking_features(
        examples.item_history[rows],
        examples.history_timestamp[rows],
        examples.timestamp[rows],
        items,
        content.item_genres,
        content.demographics(examples.user_id[rows]),
        candidate_scores=scores,
    )
    return feats, {"label": label, "weight": weight}


# ---------------------------------------------------------------------- recipe


def _check_units(name, value):
    if not isinstance(value, tuple) or not value or not all(
        isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in value
    ):
        raise ValueError(
            f"`{name}` must be a non-empty tuple of positive ints. Received: "
            f"{name}={value!r}"
        )


def _check_int(name, value, minimum=1, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an int >= {minimum}"
            + (" or None" if allow_none else "")
            + f". Received: {name}={value!r}"
        )


@dataclass
class YouTubeConfig(TrainSettings):
    """YouTube DNN settings (builder defaults are the paper's towers).

    Attributes:
        epochs: Epochs of the candidate stage.
        batch_size: Batch of the candidate stage.
        max_length: History window (the last watches before each example).
        num_sampled: Sampled-softmax negatives per batch.
        distortion: Exponent of the sampler's unigram counts.
        candidate_embedding_dim: Watch-embedding width of the candidate model.
        candidate_hidden_units: Candidate tower; the last is the user-vector width.
        ranking_epochs: Epochs of the ranking stage.
        ranking_batch_size: Batch of the ranking stage.
        ranking_embedding_dim: Item-embedding width of the ranking model.
        ranking_hidden_units: Ranking tower.
        ranking_negatives: Impression stand-ins per positive.
        ranking_per_user: Rolled-back ranking examples kept per user (None: all).
        impression_top: Negatives come from the candidate model's top this many.
        use_candidate_score: Whether the ranker takes the candidate score.
        num_candidates: Items retrieved per request before ranking.
        refit: After the validated stages, train both models again on all
            training data (the validation part included) with the same settings
            (stages ``candidate_refit``, ``ranking_refit``); they are the run's
            serving graphs. Choose the epochs on validation first (no early
            stopping with refit).

    Builder keyword arguments given to ``tfrec train`` (``hidden_units``,
    ``dropout`` ...) apply to the requested model and override these.
    """

    epochs: int = 10
    batch_size: int = 512
    ks: tuple = (10, 50, 100)
    max_length: int = 50
    num_sampled: int = 256
    distortion: float = 0.75
    candidate_embedding_dim: int = 256
    candidate_hidden_units: tuple = (1024, 512, 256)
    ranking_epochs: int = 5
    ranking_batch_size: int = 1024
    ranking_embedding_dim: int = 32
    ranking_hidden_units: tuple = (1024, 512, 256)
    ranking_negatives: int = 4
    ranking_per_user: int | None = None
    impression_top: int = 100
    use_candidate_score: bool = True
    num_candidates: int = 100
    refit: bool = False

    def validate(self) -> None:
        super().validate()
        for name in ("max_length", "num_sampled", "candidate_embedding_dim",
                     "ranking_epochs", "ranking_batch_size", "ranking_embedding_dim",
                     "ranking_negatives", "impression_top", "num_candidates"):
            _check_int(name, getattr(self, name))
        _check_int("ranking_per_user", self.ranking_per_user, allow_none=True)
        for name in ("candidate_hidden_units", "ranking_hidden_units"):
            _check_units(name, getattr(self, name))
        if self.refit and self.early_stopping:
            raise ValueError(
                "`refit` retrains for a fixed number of epochs on all training data, "
                "so it cannot early-stop: choose the epochs with --early-stopping "
                "first, then set refit=true with those epochs."
            )
        if not isinstance(self.distortion, (int, float)) or not (
            0.0 <= self.distortion <= 1.0
        ):
            raise ValueError(
                f"`distortion` must be in [0, 1]. Received: distortion={self.distortion!r}"
            )


_REPORT = "reports/youtube.md (seeds 0-2, ML-100K, time split `last`)"


@register_recipe
class YouTubeRecipe(Recipe):
    name = "youtube"
    models = ("youtube_candidate", "youtube_ranking")
    data_kind = "histories"
    needs_content = True
    default_dataset = "movielens-100k"
    datasets = hx.HISTORY_DATASETS
    splits = ("last",)
    query = "pipeline"
    Config = YouTubeConfig
    presets = (
        Preset(
            "youtube_ml100k",
            {"epochs": 4, "batch_size": 512, "learning_rate": 0.001,
             "candidate_embedding_dim": 64, "candidate_hidden_units": (1024, 512, 256),
             "num_sampled": 256, "max_length": 50, "ranking_epochs": 2,
             "ranking_batch_size": 2048, "ranking_hidden_units": (256, 128, 64),
             "ranking_negatives": 4, "ranking_per_user": 20, "num_candidates": 100,
             "use_candidate_score": True, "refit": True},
            f"{_REPORT}: the settings behind the README's YouTube rows; towers "
            "from the paper (candidate 1024-512-256), epochs, embedding width 64 "
            "and ranking tower 256-128-64 scaled to a CPU budget (fixed in "
            "advance, not tuned on validation nor on test). refit: the served "
            "models train on all training data, as the report's did; the first "
            "pass reports validation metrics",
            dataset="movielens-100k",
        ),
        Preset(
            "youtube_paper",
            {"candidate_hidden_units": (1024, 512, 256),
             "ranking_hidden_units": (1024, 512, 256), "candidate_embedding_dim": 256,
             "ranking_embedding_dim": 32, "num_sampled": 256, "max_length": 50},
            "Covington et al. 2016, Sec. 3.4 / 4.3 (1024-512-256 ReLU towers, "
            "256-wide watch embeddings; sampled softmax); other values: this "
            "recipe's defaults",
            dataset="movielens-100k",
        ),
    )
    test_config = {
        "epochs": 2, "ranking_epochs": 2, "batch_size": 64, "ranking_batch_size": 64,
        "learning_rate": 0.01, "candidate_embedding_dim": 8,
        "candidate_hidden_units": (16, 8), "ranking_embedding_dim": 4,
        "ranking_hidden_units": (8,), "num_sampled": 8, "max_length": 10,
        "num_candidates": 10, "impression_top": 10,
    }

    def size_kwargs(self):
        return ("num_items", "num_genres")

    # ---- data ----------------------------------------------------------------
    def load_data(self, source, config):
        data = hx.load_histories(source)
        data.max_length = config.max_length  # saved in vocab/ for recommend
        return data

    def synthetic_data(self, seed=0):
        return hx.synthetic_histories(seed)

    def describe(self, data):
        return hx.describe(data)

    def vocab(self, data):
        return hx.vocab(data)

    # ---- training ------------------------------------------------------------
    def stage_names(self, model, config):
        if config.refit:
            return ("candidate", "ranking", "candidate_refit", "ranking_refit")
        return ("candidate", "ranking")

    def _kwargs(self, which, model, data, config, model_kwargs):
        if which == "youtube_candidate":
            kw = {"embedding_dim": config.candidate_embedding_dim,
                  "hidden_units": config.candidate_hidden_units}
        else:
            kw = {"embedding_dim": config.ranking_embedding_dim,
                  "hidden_units": config.ranking_hidden_units,
                  "use_candidate_score": config.use_candidate_score}
        if model == which:
            kw.update(model_kwargs)
        if not data.demographics:
            kw["demographics"] = False
        kw.update(num_items=data.split.num_items,
                  num_genres=int(data.content.item_genres.shape[1]))
        return kw

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        from tfrec.data.pipelines import SamplerEpochCallback

        refit = stage.endswith("_refit")
        fit = data.split if refit else data.fit
        base = stage.removesuffix("_refit")
        if base not in ("candidate", "ranking"):
            raise ValueError(f"Unknown stage {stage!r} of the youtube recipe.")
        if base == "candidate":
            kw = self._kwargs("youtube_candidate", model, data, config, model_kwargs)
            net = create_model("youtube_candidate", **kw)
            examples = rolled_back_examples(fit, max_length=config.max_length)
            feats, labels = candidate_training_data(fit, data.content, examples)
            feats = _select(feats, net.get_layer("query_tower").input)
            counts = np.bincount(fit.train["item_id"], minlength=fit.num_items)
            trainer = SampledSoftmaxTask(
                net, num_sampled=min(config.num_sampled, fit.num_items - 1),
                unigrams=counts, distortion=config.distortion, seed=config.seed,
            )
            trainer.compile(optimizer=make_optimizer(config.optimizer,
                                                     config.learning_rate))
            source = EpochExamples(feats, labels, seed=config.seed)
            ks = config.ks

            def validate():
                return _pick(candidate_metrics(net, fit, data, ks, config.max_length))

            return StagePlan(
                trainer=trainer,
                dataset=epoch_dataset(source, config.batch_size),
                epochs=config.epochs,
                models={"youtube_candidate": net},
                callbacks=[SamplerEpochCallback(source)],
                validate=None if refit else validate,
                monitor=None if refit else f"recall@{max(ks)}",
            )
        cand_plan = previous["candidate_refit" if refit else "candidate"]
        cand = cand_plan.models["youtube_candidate"]
        cand_kw = self._kwargs("youtube_candidate", model, data, config, model_kwargs)
        kw = self._kwargs("youtube_ranking", model, data, config, model_kwargs)
        net = create_model("youtube_ranking", **kw)
        examples = rolled_back_examples(
            fit, max_length=config.max_length, max_per_user=config.ranking_per_user,
            seed=config.seed,
        )
        negatives = impression_negatives(
            cand, fit, data.content, examples, num_negatives=config.ranking_negatives,
            top=config.impression_top, seed=config.seed,
        )
        feats, y = ranking_training_data(
            fit, data.content, examples, num_negatives=config.ranking_negatives,
            negatives=negatives,
            candidate_model=cand if kw.get("use_candidate_score", True) else None,
            seed=config.seed,
        )
        trainer = WeightedLogisticTask(net)
        trainer.compile(optimizer=make_optimizer(config.optimizer,
                                                 config.learning_rate))
        source = EpochExamples(_select(feats, net.input), y, seed=config.seed)
        ks, n_cand = config.ks, config.num_candidates

        def validate():
            return _pick(pipeline_metrics(cand, net, fit, data, (ks[0],), n_cand,
                                          config.max_length))

        def serving():
            graphs = {
                "youtube_candidate": ServingGraph("youtube_candidate", cand_kw, cand),
                "youtube_ranking": ServingGraph("youtube_ranking", kw, net),
            }
            return graphs

        return StagePlan(
            trainer=trainer,
            dataset=epoch_dataset(source, config.ranking_batch_size),
            epochs=config.ranking_epochs,
            models={"youtube_ranking": net},
            callbacks=[SamplerEpochCallback(source)],
            validate=None if refit else validate,
            monitor=None if refit else f"ndcg@{ks[0]}",
            serving=serving if stage == self.stage_names(model, config)[-1] else None,
        )

    # ---- evaluation and use --------------------------------------------------
    def evaluate(self, model, serving, data, config, part="test"):
        import time

        split = data.split if part == "test" else data.fit
        cand = serving["youtube_candidate"].model
        out = {}
        started = time.time()
        out["candidate"] = candidate_metrics(cand, split, data, config.ks,
                                             config.max_length)
        out["candidate"]["seconds"] = round(time.time() - started, 2)
        if "youtube_ranking" in serving:
            started = time.time()
            out["pipeline"] = pipeline_metrics(
                cand, serving["youtube_ranking"].model, split, data, (config.ks[0],),
                config.num_candidates, config.max_length,
            )
            out["pipeline"]["seconds"] = round(time.time() - started, 2)
        return out

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        from tfrec.models.youtube import item_table

        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int. Received: {k}")
        cand = serving["youtube_candidate"].model
        spec = cand.get_layer("query_tower").input.get("user_genres")
        num_genres = int(spec.shape[-1]) if spec is not None else 1
        tables = hx.tables_from_vocab(vocab, num_genres)
        user = ix.user_index(vocab, query)
        max_length = int(tables.get("max_length", 50))
        hist, htime = hx.user_history(tables, user, max_length)
        demo = hx.demographics(tables, [user])
        tower = cand.get_layer("query_tower")
        feats = candidate_features(hist, tables["item_genres"], demo)
        q = np.asarray(tower(_select(feats, tower.input))["query_embedding"])
        scores = (q @ item_table(cand).T)[0].astype(np.float64)
        seen = ix.seen_items(vocab, user) if exclude_seen else ()
        if model == "youtube_candidate" or "youtube_ranking" not in serving:
            return ix.top_k(scores, vocab, k, seen)
        rank = serving["youtube_ranking"].model
        n_cand = max(k, min(100, len(vocab.items)))
        retrieved = ix.top_k(scores, vocab, n_cand, seen)
        ids = np.array([vocab.items.index(raw) for raw, _ in retrieved], np.int64)
        n = len(ids)
        now = np.full(n, int(np.max(tables["times"], initial=0)) + 1)
        feats = ranking_features(
            np.repeat(hist, n, 0), np.repeat(htime, n, 0), now, ids,
            tables["item_genres"], {kk: np.repeat(v, n) for kk, v in demo.items()},
            candidate_scores=scores[ids],
        )
        odds = np.asarray(rank(_select(feats, rank.input))["odds"]).reshape(-1)
        order = np.argsort(-odds, kind="stable")[:k]
        return [(vocab.items[ids[j]], float(odds[j])) for j in order]


# ------------------------------------------------------------------ evaluation


def _pick(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(("hr@", "ndcg@", "recall@"))}


def _tables(split: TimeSplit, data, max_length: int) -> PipelineTables:
    return PipelineTables.from_split(split, data.content, max_length=max_length,
                                     item_names=None)


def candidate_scores(cand, split: TimeSplit, data, requests=None,
                     max_length: int = 50) -> np.ndarray:
    """``[test users, N]`` dot-product scores of ``split``'s test requests
    (histories of the last ``max_length`` interactions)."""
    from tfrec.evaluation.histories import eval_requests
    from tfrec.models.youtube import item_table

    req = requests or eval_requests(split, _tables(split, data, max_length))
    tower = cand.get_layer("query_tower")
    feats = candidate_features(req.item_history, data.content.item_genres,
                               data.content.demographics(req.users))
    q = eager_call(tower, _select(feats, tower.input), "query_embedding")
    return q @ item_table(cand).T


def candidate_metrics(cand, split: TimeSplit, data, ks, max_length: int = 50) -> dict:
    """Full-ranking retrieval metrics of ``split``'s test (or validation) part."""
    from tfrec.evaluation.histories import evaluate_scores

    scores = candidate_scores(cand, split, data, max_length=max_length)
    return evaluate_scores(scores, split, ks)


def pipeline_metrics(cand, rank, split: TimeSplit, data, ks, num_candidates,
                     max_length: int = 50) -> dict:
    """Metrics of the two-stage pipeline (retrieve, then rank) on ``split``."""
    from tfrec.evaluation.histories import (
        eval_requests,
        evaluate_scores,
        pipeline_scores,
    )

    tables = _tables(split, data, max_length)
    req = eval_requests(split, tables)
    scores = candidate_scores(cand, split, data, req)
    n = max(1, min(int(num_candidates), split.num_items))
    def rank_fn(feats):
        return {"score": eager_call(rank, _select(feats, rank.input), "score")}

    pipe = pipeline_scores(scores, split, req, tables, rank_fn, num_candidates=n)
    return evaluate_scores(pipe, split, ks)
