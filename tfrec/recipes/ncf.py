"""Training recipe of the NCF family: GMF, MLP, NeuMF (optionally pre-trained) and
the dot-product MF baseline.

Reference: He et al., "Neural Collaborative Filtering", WWW 2017 (Section 4:
pointwise log loss with ``num_negatives`` fresh uniform negatives per positive per
epoch, Adam, batch 256, lr 0.001; NeuMF pre-trained from GMF and MLP, then
fine-tuned with plain SGD). Rendle et al., RecSys 2020 (the MF baseline).

``task="explicit"`` models (output ``rating``) train with squared loss on the
ratings instead. NeuMF with ``pretrain=True`` is three stages, ``gmf``, ``ncf_mlp``
then ``neumf``; each is resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from tfrec.evaluation.scoring import keras_scorer, output_name
from tfrec.recipes import interactions as ix
from tfrec.recipes.base import Preset, Recipe, StagePlan, TrainSettings, register_recipe
from tfrec.registry import create_model
from tfrec.training.optimizers import make_optimizer


@dataclass
class NCFConfig(TrainSettings):
    """NCF settings (paper defaults).

    Attributes:
        num_negatives: Fresh negatives per positive per epoch (implicit models).
        pretrain: NeuMF only: pre-train GMF and MLP first (three stages).
        pretrain_epochs: Epochs of each pre-training stage.
        alpha: Weight of GMF's prediction layer in the pre-trained NeuMF.
        finetune_optimizer: Optimiser of the pre-trained NeuMF (the paper: SGD).
        steps_per_execution: Training steps per call of the compiled step (fewer
            Python round trips; the result is the same).
        lr_decay: Per-epoch factor of the learning rate (epoch ``e`` trains at
            ``learning_rate * lr_decay**e``; 1 keeps it constant).
        lazy_adam: Where the optimiser is ``adam``, use `LazyAdam` (embedding
            rows and their moments updated only where the batch touches them;
            not the same training math as Adam; `tfrec.training.lazy_adam`).
        group_negatives: Keep each positive and its negatives in one batch
            (`GraphNegatives`' ``group_negatives``): fewer distinct embedding
            rows per step, the same examples per epoch.
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.001
    num_negatives: int = 4
    pretrain: bool = False
    pretrain_epochs: int = 10
    alpha: float = 0.5
    finetune_optimizer: str = "sgd"
    steps_per_execution: int = 1
    lr_decay: float = 1.0
    lazy_adam: bool = False
    group_negatives: bool = False

    def validate(self) -> None:
        super().validate()
        if isinstance(self.num_negatives, bool) or not isinstance(
            self.num_negatives, int
        ) or self.num_negatives < 0:
            raise ValueError(
                f"`num_negatives` must be an int >= 0. Received: {self.num_negatives!r}"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: {self.alpha!r}")
        if isinstance(self.steps_per_execution, bool) or not isinstance(
            self.steps_per_execution, int
        ) or self.steps_per_execution < 1:
            raise ValueError(
                "`steps_per_execution` must be a positive int. Received: "
                f"{self.steps_per_execution!r}"
            )
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"`lr_decay` must be in (0, 1]. Received: {self.lr_decay!r}")
        if self.pretrain_epochs < 1:
            raise ValueError(f"`pretrain_epochs` must be >= 1. Received: {self.pretrain_epochs}")


_PAPER = "He et al. 2017, Section 4.1-4.2 (factors 8, 4 negatives, batch 256, Adam 1e-3)"
_RECBOLE_CPU = {"epochs": 8, "batch_size": 2048, "learning_rate": 3e-3, "num_negatives": 4}
_RECBOLE_CPU_SOURCE = (
    "8 epochs, batch 2048, Adam lr 3e-3, 4 negatives: a CPU budget, not chosen on "
    "data (a larger batch and lr than the paper's 256 / 1e-3 to make up for the few "
    "epochs). The RecBole split (ratings >= 3, 10-core, per-user 80/10/10) is "
    "passed in memory by scripts/reproduce_autoencoders.py; this recipe has no "
    "'recbole' split, so on ncf-ml-1m these settings train on the leave-one-out split"
)


def _lr_decay(config, lr) -> list:
    """A per-epoch learning-rate decay callback (a function of the epoch, so a
    resumed run trains at the same rates), or none."""
    if config.lr_decay == 1.0:
        return []
    decay = float(config.lr_decay)
    return [keras.callbacks.LearningRateScheduler(lambda epoch: lr * decay**epoch)]


def _optimizer(name, lr, config):
    if config.lazy_adam and name == "adam":
        from tfrec.training.lazy_adam import LazyAdam

        return LazyAdam(lr)
    return make_optimizer(name, lr)


@register_recipe
class NCFRecipe(Recipe):
    name = "ncf"
    models = ("gmf", "ncf_mlp", "neumf", "mf")
    data_kind = "interactions"
    default_dataset = "movielens-100k"
    datasets = ix.INTERACTION_DATASETS
    splits = ("leave_one_out", "random", "time", "last", "ncf_valid")
    query = "user"
    Config = NCFConfig
    presets = (
        Preset(
            "ncf_paper",
            {"embedding_dim": 8, "epochs": 20, "batch_size": 256, "learning_rate": 0.001,
             "num_negatives": 4},
            _PAPER,
            dataset="ncf-ml-1m",
            models=("gmf", "ncf_mlp", "neumf"),
        ),
        Preset(
            "ncf_paper_cpu",
            {"embedding_dim": 8, "epochs": 10, "batch_size": 256, "learning_rate": 0.001,
             "num_negatives": 4},
            _PAPER + "; 10 epochs instead of 20 (the README's NCF table, CPU budget)",
            dataset="ncf-ml-1m",
            models=("gmf", "ncf_mlp", "neumf"),
        ),
        Preset(
            "ncf_fast",
            {"embedding_dim": 8, "epochs": 12, "batch_size": 2048,
             "learning_rate": 0.004, "num_negatives": 4, "steps_per_execution": 16},
            "scripts/bench_neumf.py's speed preset: the paper's model and 4 negatives "
            "per positive at batch 2048 with Adam lr 0.004, 12 epochs. The learning "
            "rate was chosen on validation (`tfrec select neumf --preset ncf_fast "
            "--split ncf_valid --grid lr=0.002,0.004,0.008`: val HR@10 0.7992 / "
            "0.8036 / 0.7977 at epoch 12, reports/select_ncf_fast.md); batch and "
            "epochs were not selected",
            dataset="ncf-ml-1m",
            models=("neumf",),
        ),
        Preset(
            "ncf_pretrained",
            {"embedding_dim": 8, "pretrain": True, "pretrain_epochs": 10, "epochs": 5,
             "learning_rate": 0.001, "finetune_optimizer": "sgd", "alpha": 0.5},
            "He et al. 2017, Section 3.4.1 (alpha 0.5, SGD fine-tuning); 10 + 10 + 5 "
            "epochs (the README's pre-trained row)",
            dataset="ncf-ml-1m",
            models=("neumf",),
        ),
        Preset(
            "rendle_mf",
            {"embedding_dim": 64, "epochs": 6, "num_negatives": 4, "l2": 1e-5},
            "Rendle et al. 2020 dot-product MF, dim 64, per-example L2 1e-5, 6 epochs "
            "(the README's MF row)",
            dataset="ncf-ml-1m",
            models=("mf",),
        ),
        Preset(
            "neumf_recbole_cpu",
            {"embedding_dim": 8, **_RECBOLE_CPU},
            "NeuMF (factors 8, MLP 32-16-8) beside CDAE on RecBole's ML-1M protocol "
            f"(reports/autoencoders.md); {_RECBOLE_CPU_SOURCE}",
            dataset="ncf-ml-1m",
            models=("neumf",),
        ),
        Preset(
            "mf_recbole_cpu",
            {"embedding_dim": 16, **_RECBOLE_CPU},
            "MF (dim 16, biases) beside CDAE on RecBole's ML-1M protocol "
            f"(reports/autoencoders.md); {_RECBOLE_CPU_SOURCE}",
            dataset="ncf-ml-1m",
            models=("mf",),
        ),
        Preset(
            "mf_ml100k_last",
            {"embedding_dim": 32, "epochs": 6, "batch_size": 2048,
             "learning_rate": 0.002, "num_negatives": 4, "ks": (10, 50, 100)},
            "reports/youtube.md MF row (with --split last, the YouTube / MV-DNN "
            "time split): the values the earlier reproduce_youtube.py hard-coded "
            "for its MF baseline (dim 32, 6 epochs, Adam 2e-3, batch 2048, 4 "
            "negatives); how they were chosen is not recorded, and they were not "
            "selected on validation",
            dataset="movielens-100k",
            models=("mf",),
        ),
    )
    test_config = {"epochs": 2, "batch_size": 64, "learning_rate": 0.01, "embedding_dim": 4}

    def size_kwargs(self):
        return ("num_users", "num_items")

    # ---- data ----------------------------------------------------------------
    def load_data(self, source, config):
        return ix.load_split(source)

    def synthetic_data(self, seed=0):
        return ix.synthetic_split(seed)

    def describe(self, data):
        return ix.describe_split(data)

    def vocab(self, data):
        return ix.split_vocab(data)

    # ---- training ------------------------------------------------------------
    def stage_names(self, model, config):
        if model == "neumf" and config.pretrain:
            return ("gmf", "ncf_mlp", "neumf")
        return (model,)

    def _build(self, name, split, model_kwargs):
        kwargs = dict(model_kwargs)
        if name != "mf" and name != "neumf":
            # GMF / MLP pre-training stages take NeuMF's shared sizes only.
            allowed = set(self.builder_kwargs(name))
            kwargs = {k: v for k, v in kwargs.items() if k in allowed}
        kwargs.update(num_users=split.num_users, num_items=split.num_items)
        return create_model(name, **kwargs), kwargs

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        from tfrec.data.pipelines import (
            SamplerEpochCallback,
            explicit_dataset,
            graph_implicit_dataset,
        )

        split = data
        net, kwargs = self._build(stage, split, model_kwargs)
        optimizer, lr = config.optimizer, config.learning_rate
        if stage == "neumf" and "gmf" in previous:
            from tfrec.models.ncf import load_pretrained_neumf

            load_pretrained_neumf(
                net,
                previous["gmf"].models["gmf"],
                previous["ncf_mlp"].models["ncf_mlp"],
                alpha=config.alpha,
            )
            optimizer = config.finetune_optimizer
        out = output_name(net)
        if out == "score":
            # Negatives drawn inside tf.data (seed, epoch): no materialised epoch.
            ds, source = graph_implicit_dataset(
                split.train["user_id"],
                split.train["item_id"],
                split.num_items,
                num_negatives=config.num_negatives,
                batch_size=config.batch_size,
                seed=config.seed,
                output_name=out,
                group_negatives=config.group_negatives,
            )
            loss = keras.losses.BinaryCrossentropy()
        else:
            ds, source = explicit_dataset(
                split.train["user_id"],
                split.train["item_id"],
                split.train["rating"],
                batch_size=config.batch_size,
                seed=config.seed,
                output_name=out,
            )
            loss = keras.losses.MeanSquaredError()
        net.compile(
            optimizer=_optimizer(optimizer, lr, config),
            loss={out: loss},
            steps_per_execution=config.steps_per_execution,
        )
        is_last = stage == self.stage_names(model, config)[-1]
        epochs = config.epochs if is_last else config.pretrain_epochs
        scorer = keras_scorer(net)
        validate = ix.validation_fn(split, lambda: scorer, ks=config.ks)
        k = config.ks[0]
        return StagePlan(
            trainer=net,
            dataset=ds,
            epochs=epochs,
            models={stage: net},
            callbacks=[SamplerEpochCallback(source), *_lr_decay(config, lr)],
            validate=validate,
            monitor=f"ndcg@{k}" if out == "score" else None,
            serving=(lambda: ix.graph(stage, kwargs, net)) if is_last else None,
        )

    # ---- evaluation and use --------------------------------------------------
    def evaluate(self, model, serving, data, config, part="test"):
        net = serving[model].model
        score_fn = keras_scorer(net)
        rating_fn = score_fn if output_name(net) == "rating" else None
        return ix.evaluate_split(data, score_fn, part, ks=config.ks, rating_fn=rating_fn)

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        score_fn = keras_scorer(serving[model].model)
        return ix.recommend_for_user(score_fn, vocab, query, k=k, exclude_seen=exclude_seen)
