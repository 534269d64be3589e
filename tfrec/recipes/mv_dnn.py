"""Training recipe of MV-DNN (multi-view DNN) on watch histories with content.

Reference: Elkahky, Song, He. "A Multi-View Deep Learning Approach for Cross
Domain User Modeling in Recommendation Systems". WWW 2015 (Eq. 4-6: per-view
softmax over ``gamma * cos`` of the observed item and sampled negatives).

One stage for every registered name (``mv_dnn``, ``mv_dnn_user_tower``,
``mv_dnn_item_tower``): `mv_dnn` trains on (rolled-back user view, next item)
pairs with :class:`MultiViewSoftmaxTask`; the run serves the scorer, its user
tower and the item tower of the first view (the other views' towers are nested
in ``mv_dnn``). The user view is the content of the watched items plus
demographics; no ids enter the model.

With ``refit=true`` a second stage trains again on all training data
(validation part included) and that model is served.

Validation: each user's latest training interaction is the validation next
item (`tfrec.recipes.histories`), ranked over all items by the mean cosine;
early stopping watches ``recall@<largest k>``. Negatives come from a stateless
sampler keyed by (seed, step) and the epoch order from (seed, epoch), so a
resumed run ends with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tfrec.data.histories import ContentTables, TimeSplit, history_mean
from tfrec.data.histories import rolled_back_examples as _rolled_back
from tfrec.models.mv_dnn import VIEW_INPUTS, VIEWS, mv_dnn_views
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
from tfrec.recipes.youtube import EpochExamples, eager_call, epoch_dataset, step_seed
from tfrec.registry import create_model
from tfrec.training.optimizers import make_optimizer
from tfrec.youtube_serving import _select

# ------------------------------------------------------------------- objective


def smoothed_softmax_loss(user, positive, negatives, gamma):
    """MV-DNN loss for one view: ``-log softmax(gamma * cos)[positive]``.

    Args:
        user: ``[B, D]`` user vectors.
        positive: ``[B, D]`` vectors of the observed items.
        negatives: ``[B, K, D]`` vectors of sampled negatives.
        gamma: smoothing factor.

    Returns:
        ``[B]`` losses.
    """
    u = tf.math.l2_normalize(user, axis=-1, epsilon=1e-12)
    p = tf.math.l2_normalize(positive, axis=-1, epsilon=1e-12)
    n = tf.math.l2_normalize(negatives, axis=-1, epsilon=1e-12)
    pos = tf.reduce_sum(u * p, axis=-1, keepdims=True)
    neg = tf.einsum("bd,bkd->bk", u, n)
    logits = gamma * tf.concat([pos, neg], axis=1)
    return -tf.nn.log_softmax(logits, axis=1)[:, 0]


def _check_pos(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


class MultiViewSoftmaxTask(keras.Model):
    """Training wrapper for `mv_dnn`: per-view smoothed softmax, summed over views.

    ``fit`` on ``(user_features, item_index)`` batches. The item content of
    every view is held as constant tables (``item_features``: ``{input name:
    [num_items, ...]}``); each step embeds the whole catalogue per view (small on
    MovieLens) and gathers the positive and `num_negatives` uniformly sampled
    negatives per example (stateless, seeded by ``(seed, step)``; a negative
    equal to the positive is shifted by one).

    Args:
        model: an `mv_dnn` model.
        item_features: content tables keyed by item input name.
        num_negatives: negatives per positive (4 in the paper's DSSM setup).
        gamma: softmax smoothing factor.
        seed: seed of the negative sampler.
    """

    def __init__(self, model, item_features, *, num_negatives=4, gamma=10.0, seed=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.views = mv_dnn_views(model)
        self.user_tower = model.get_layer("user_tower")
        self.item_towers = [model.get_layer(f"item_tower_{v}") for v in self.views]
        self.item_keys = [VIEW_INPUTS[v] for v in self.views]
        missing = [k for k in self.item_keys if k not in item_features]
        if missing:
            raise ValueError(
                f"`item_features` lacks {missing}; the model's views need "
                f"{self.item_keys}. Received keys {sorted(item_features)}."
            )
        self.tables = [tf.constant(np.asarray(item_features[k])) for k in self.item_keys]
        self.num_items = int(self.tables[0].shape[0])
        _check_pos("num_negatives", num_negatives)
        if not float(gamma) > 0:
            raise ValueError(f"`gamma` must be > 0. Received: gamma={gamma!r}")
        self.num_negatives = int(num_negatives)
        self.gamma = float(gamma)
        self.seed = int(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True  # wraps built functional models (BackupAndRestore)

    def call(self, inputs, training=False):
        return self.user_tower(inputs, training=training)

    def train_step(self, data):
        x, items = data
        items = tf.cast(tf.reshape(items, [-1]), tf.int32)
        batch = tf.shape(items)[0]
        neg = tf.random.stateless_uniform(
            [batch, self.num_negatives], seed=step_seed(self.seed, self.optimizer.iterations),
            minval=0, maxval=self.num_items, dtype=tf.int32,
        )
        neg = tf.where(
            tf.equal(neg, items[:, None]), (neg + 1) % self.num_items, neg
        )
        with tf.GradientTape() as tape:
            u = tf.cast(self.user_tower(x, training=True)["query_embedding"], tf.float32)
            loss = 0.0
            for tower, key, table in zip(
                self.item_towers, self.item_keys, self.tables, strict=True
            ):
                all_items = tf.cast(
                    tower({key: table}, training=True)["item_embedding"], tf.float32
                )
                pos = tf.gather(all_items, items)
                negs = tf.gather(all_items, neg)
                loss += tf.reduce_mean(smoothed_softmax_loss(u, pos, negs, self.gamma))
            scaled = self.optimizer.scale_loss(loss)  # loss scaling (mixed precision)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


# ------------------------------------------------------------------- features


def mv_dnn_user_features(hist, content: ContentTables, users) -> dict:
    """MV-DNN user view: content bags of the watched items plus demographics."""
    return {
        "user_genres": history_mean(hist, content.item_genres),
        "user_title_tokens": history_mean(hist, content.item_title_tokens),
        **content.demographics(users),
    }


def mv_dnn_item_features(content: ContentTables) -> dict:
    return {
        "item_genres": content.item_genres,
        "item_title_tokens": content.item_title_tokens,
        "item_era": content.item_era,
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def view_vectors(model, content: ContentTables) -> dict[str, np.ndarray]:
    """``{view: [num_items, D]}`` unit item vectors of every view of ``model``."""
    feats = mv_dnn_item_features(content)
    out = {}
    for view in mv_dnn_views(model):
        key = VIEW_INPUTS[view]
        tower = model.get_layer(f"item_tower_{view}")
        out[view] = _unit(eager_call(tower, {key: np.asarray(feats[key])}, "item_embedding"))
    return out


def mv_dnn_scores(model, split: TimeSplit, data, max_length: int = 50) -> np.ndarray:
    """``[test users, N]`` mean cosine of ``split``'s test requests (histories
    of the last ``max_length`` interactions)."""
    from tfrec.data.histories import serving_histories

    users, now = split.test["user_id"], split.test["timestamp"]
    hist, _ = serving_histories(split, users, now, max_length=max_length)
    tower = model.get_layer("user_tower")
    feats = _select(mv_dnn_user_features(hist, data.content, users), tower.input)
    u = _unit(eager_call(tower, feats, "query_embedding"))
    return np.mean([u @ e.T for e in view_vectors(model, data.content).values()], axis=0)


# ---------------------------------------------------------------------- recipe


@dataclass
class MVDNNConfig(TrainSettings):
    """MV-DNN settings (builder defaults: DSSM's 300-300-128 tanh towers).

    Attributes:
        num_negatives: Sampled negatives per positive, every view.
        gamma: Softmax smoothing factor of ``gamma * cos``.
        max_length: History window of the user view.
        title_vocab: Title-token vocabulary of the content tables.
        refit: After the validated stage, train again on all training data (the
            validation part included) with the same settings (stage ``refit``);
            that model is served. No early stopping with refit.
    """

    epochs: int = 5
    batch_size: int = 512
    ks: tuple = (10, 50, 100)
    num_negatives: int = 4
    gamma: float = 10.0
    max_length: int = 50
    title_vocab: int = 300
    refit: bool = False

    def validate(self) -> None:
        super().validate()
        for name in ("num_negatives", "max_length", "title_vocab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value!r}"
                )
        if self.refit and self.early_stopping:
            raise ValueError(
                "`refit` retrains for a fixed number of epochs on all training data, "
                "so it cannot early-stop: choose the epochs with --early-stopping "
                "first, then set refit=true with those epochs."
            )
        if not isinstance(self.gamma, (int, float)) or not self.gamma > 0:
            raise ValueError(f"`gamma` must be > 0. Received: gamma={self.gamma!r}")


_TOWER_KEYS = ("num_genres", "title_vocab", "hidden_units", "embedding_dim",
               "activation")
_USER_KEYS = _TOWER_KEYS + ("demographics", "num_genders", "num_ages",
                            "num_occupations")
_ITEM_KEYS = _TOWER_KEYS + ("num_eras",)


@register_recipe
class MVDNNRecipe(Recipe):
    name = "mv_dnn"
    models = ("mv_dnn", "mv_dnn_user_tower", "mv_dnn_item_tower")
    data_kind = "histories"
    needs_content = True
    default_dataset = "movielens-100k"
    datasets = hx.HISTORY_DATASETS
    splits = ("last",)
    query = "user"
    Config = MVDNNConfig
    presets = (
        Preset(
            "mv_dnn_ml100k",
            {"epochs": 2, "batch_size": 2048, "learning_rate": 0.001, "gamma": 10.0,
             "num_negatives": 4, "max_length": 50, "hidden_units": (300, 300),
             "embedding_dim": 128, "refit": True},
            "reports/youtube.md MV-DNN row (seeds 0-2, ML-100K, time split `last`): "
            "the paper's gamma and DSSM towers 300-300-128 (Elkahky et al. 2015); "
            "2 epochs and batch 2048 for a CPU budget (fixed in advance, not tuned "
            "on validation nor on test); refit: the served model trains on all "
            "training data, as the report's did",
            dataset="movielens-100k",
        ),
    )
    test_config = {
        "epochs": 2, "batch_size": 64, "learning_rate": 0.01, "hidden_units": (8,),
        "embedding_dim": 4, "max_length": 10, "title_vocab": 12,
    }

    def size_kwargs(self):
        return ("num_genres", "title_vocab", "num_eras")

    # ---- data ----------------------------------------------------------------
    def load_data(self, source, config):
        data = hx.load_histories(source, title_vocab=config.title_vocab)
        if not data.has_content:
            raise ValueError(
                f"{source.file}: MV-DNN sees item content only (no ids); give an item "
                "content file with --content FILE (columns item, genres "
                "('|'-separated), optionally title)."
            )
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
        return ("train", "refit") if config.refit else ("train",)

    def _kwargs(self, model, data, model_kwargs):
        allowed = set(self.builder_kwargs("mv_dnn"))
        extra = sorted(set(model_kwargs) - allowed - {"view"})
        if extra:
            raise ValueError(
                f"{model} trains inside mv_dnn, whose builder does not take "
                f"{', '.join(extra)}; settable: {', '.join(sorted(allowed))}."
            )
        kw = {k: v for k, v in model_kwargs.items() if k in allowed}
        if model == "mv_dnn_item_tower" and "view" in model_kwargs:
            kw["views"] = (model_kwargs["view"],) + tuple(
                v for v in kw.get("views", VIEWS) if v != model_kwargs["view"]
            )
        if not data.demographics:
            kw["demographics"] = False
        kw.update(num_genres=int(data.content.item_genres.shape[1]),
                  title_vocab=int(data.content.item_title_tokens.shape[1]))
        return kw

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        from tfrec.data.pipelines import SamplerEpochCallback

        refit = stage == "refit"
        fit = data.split if refit else data.fit
        kw = self._kwargs(model, data, model_kwargs)
        net = create_model("mv_dnn", **kw)
        examples = _rolled_back(fit, max_length=config.max_length)
        tower = net.get_layer("user_tower")
        feats = _select(
            mv_dnn_user_features(examples.item_history, data.content, examples.user_id),
            tower.input,
        )
        trainer = MultiViewSoftmaxTask(
            net, mv_dnn_item_features(data.content), num_negatives=config.num_negatives,
            gamma=config.gamma, seed=config.seed,
        )
        trainer.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
        source = EpochExamples(feats, examples.item_id, seed=config.seed)
        ks = config.ks

        def validate():
            from tfrec.evaluation.histories import evaluate_scores

            scores = mv_dnn_scores(net, fit, data, config.max_length)
            metrics = evaluate_scores(scores, fit, ks)
            return {k: v for k, v in metrics.items()
                    if k.startswith(("hr@", "ndcg@", "recall@"))}

        return StagePlan(
            trainer=trainer,
            dataset=epoch_dataset(source, config.batch_size),
            epochs=config.epochs,
            models={"mv_dnn": net},
            callbacks=[SamplerEpochCallback(source)],
            validate=None if refit else validate,
            monitor=None if refit else f"recall@{max(ks)}",
            serving=(lambda: serving_graphs(net, kw))
            if stage == self.stage_names(model, config)[-1] else None,
        )

    # ---- evaluation and use --------------------------------------------------
    def evaluate(self, model, serving, data, config, part="test"):
        import time

        from tfrec.evaluation.histories import evaluate_scores

        split = data.split if part == "test" else data.fit
        started = time.time()
        scores = mv_dnn_scores(serving["mv_dnn"].model, split, data, config.max_length)
        out = evaluate_scores(scores, split, config.ks)
        out["seconds"] = round(time.time() - started, 2)
        return {"full": out}

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        net = serving["mv_dnn"].model
        tower = net.get_layer("user_tower")
        num_genres = int(tower.input["user_genres"].shape[-1])
        title_vocab = int(tower.input["user_title_tokens"].shape[-1])
        tables, content = _content(vocab, num_genres, title_vocab)
        user = ix.user_index(vocab, query)
        feats = _select(_user_view(tables, content, user), tower.input)
        u = _unit(np.asarray(tower(feats)["query_embedding"]))[0]
        scores = np.mean([e @ u for e in view_vectors(net, content).values()], axis=0)
        seen = ix.seen_items(vocab, user) if exclude_seen else ()
        return ix.top_k(scores, vocab, k, seen)

    # ---- the export's recommend signature (export/recommend.py) ---------------
    def serving_catalogue(self, graph: str, kwargs: dict, vocab) -> dict:
        """The item views of every item (``{item_genres, item_title_tokens,
        item_era}``, ``[num_items, ...]``) from the run's ``vocab/tables.npz``:
        the constants `mv_dnn`'s ``recommend`` signature scores the catalogue
        with. Empty for the towers (they rank nothing)."""
        if graph != "mv_dnn":
            return {}
        _, content = _content(vocab, int(kwargs.get("num_genres", 19)),
                              int(kwargs.get("title_vocab", 300)))
        return mv_dnn_item_features(content)

    def serving_query(self, graph: str, kwargs: dict, vocab, user: int) -> dict:
        """The user view of user index ``user`` (``[1, ...]`` arrays), the query
        of `mv_dnn`'s ``recommend`` signature: content of the last
        ``max_length`` training items plus demographics."""
        tables, content = _content(vocab, int(kwargs.get("num_genres", 19)),
                                   int(kwargs.get("title_vocab", 300)))
        return _user_view(tables, content, int(user))


def _content(vocab, num_genres: int, title_vocab: int) -> tuple[dict, ContentTables]:
    """``(serving tables, content)`` a run's vocabulary saved (``vocab/tables.npz``)."""
    if getattr(vocab, "tables", None) is None:
        raise ValueError(
            "MV-DNN recommends from item content, and this run's vocabulary has "
            "no content tables (vocab/tables.npz); recommend through the Python "
            "API with recipe.vocab(data), or retrain with a tfrec that saves them."
        )
    tables = hx.tables_from_vocab(vocab, num_genres, title_vocab)
    content = ContentTables(
        item_genres=tables["item_genres"],
        item_title_tokens=tables["item_title_tokens"],
        item_era=tables["item_era"],
        user_gender=tables["user_gender"],
        user_age=tables["user_age"],
        user_occupation=tables["user_occupation"],
        vocabs={},
    )
    return tables, content


def _user_view(tables: dict, content: ContentTables, user: int) -> dict:
    """Every user-view input of ``user`` (the model picks its own, ``_select``)."""
    hist, _ = hx.user_history(tables, user, int(tables.get("max_length", 50)))
    return mv_dnn_user_features(hist, content, [user])


def serving_graphs(net, kw: dict) -> dict[str, ServingGraph]:
    """The scorer, its user tower and the item tower of its first view."""
    user_kw = {k: v for k, v in kw.items() if k in _USER_KEYS}
    views = mv_dnn_views(net)
    item_kw = {k: v for k, v in kw.items() if k in _ITEM_KEYS}
    item_kw["view"] = views[0]
    return {
        "mv_dnn": ServingGraph("mv_dnn", dict(kw), net),
        "mv_dnn_user_tower": ServingGraph(
            "mv_dnn_user_tower", user_kw, net.get_layer("user_tower")
        ),
        "mv_dnn_item_tower": ServingGraph(
            "mv_dnn_item_tower", item_kw, net.get_layer(f"item_tower_{views[0]}")
        ),
    }
