"""Training recipe of GRU4Rec: ``gru4rec``, ``gru4rec_topk`` and ``gru4rec_step``.

Reference: Hidasi et al., "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016; Hidasi & Karatzoglou, "Recurrent Neural Networks with
Top-k Gains for Session-based Recommendations", CIKM 2018; the official code
(github.com/hidasib/GRU4Rec_PyTorch_Official, its ``paramfiles/``).

One run trains the layers of a ``gru4rec_step`` model with the official code's
objective (`tfrec.training.session.GRU4RecTrainer`: session-parallel
mini-batches, in-batch plus popularity-sampled negatives, cross-entropy /
BPR-max / TOP1-max) and gives all three serving graphs from that one weight
set, whichever of the three names was asked for.

Data: click sessions (`SessionData`). The test part is the published test
sessions of the catalogue set (or, for the user's own file, the sessions ending
in its last day); the validation part is carved from the training sessions the
same way the test part was cut from the whole log: the sessions ending in the
last ``valid_days`` of training (GRU4Rec's ``train_tr`` / ``train_valid``
layout). The ``train`` stage fits on training minus validation and reports
Recall@K / MRR@K on validation each epoch (early stopping watches
``recall@max(ks)``). With ``refit_full=True`` a second stage, ``refit``, trains
afresh on every training session (validation included) for ``epochs`` epochs,
which is how the official results (and the README's) were made: their settings
were chosen beforehand, never on the test sessions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfrec.recipes.base import (
    Preset,
    Recipe,
    ServingGraph,
    StagePlan,
    TrainSettings,
    Vocab,
    register_recipe,
)

SESSION_DATASETS = ("yoochoose-rsc15-100k-sample", "diginetica-srgnn-sample")
STEP = "gru4rec_step"
# The builder arguments every model of the recipe takes: the step model's
# hyperparameters (shared by all three graphs) and the top-K list length.
_ARCH = (
    "layers",
    "embedding_dim",
    "constrained_embedding",
    "dropout_embed",
    "dropout_hidden",
)


# --------------------------------------------------------------------------- data


@dataclass
class SessionData:
    """Click sessions of one run, every part indexed with one item vocabulary.

    Attributes:
        name: Data set (or file) name.
        full: Every training session (``train`` + ``valid``); its items are the
            vocabulary (indices ``1..num_items``, 0 is padding).
        train: Training sessions without the validation ones.
        valid: Validation sessions (the last ``valid_days`` of training; clicks
            on items absent from ``train`` dropped), or None.
        test: Test sessions (the published ones), clicks on unknown items dropped.
        raw_items: Raw id of item index ``k`` at position ``k - 1`` (int64, or
            strings for the user's own file).
        settings: How the data was read and split.
    """

    name: str
    full: Any
    train: Any
    valid: Any
    test: Any
    raw_items: np.ndarray
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return self.full.num_items


def _session_ends(sessions) -> np.ndarray:
    """Time of each session's last click."""
    if sessions.num_sessions == 0:
        return np.zeros(0)
    return sessions.timestamps[sessions.offsets[1:] - 1]


def carve_validation(full, valid_days: float):
    """``(train, valid)``: the sessions of ``full`` ending in its last
    ``valid_days`` days are validation (GRU4Rec's rule for the test part).

    Validation clicks on items that only occur in validation are dropped, then
    validation sessions shorter than 2 clicks. Both parts keep ``full``'s item
    vocabulary. ``valid`` is None when nothing is left for it.
    """
    from tfrec.data import DataError
    from tfrec.data.sessions import Sessions

    ends = _session_ends(full)
    cut = float(ends.max()) - 86400.0 * float(valid_days)
    is_valid = ends >= cut
    train = full.subset(~is_valid)
    if train.num_sessions == 0 or (train.lengths >= 2).sum() == 0:
        raise DataError(
            f"{full.name}: too few sessions to split: the last {valid_days:g} "
            "day(s) of training, kept for validation, hold every training session; "
            "the data must span more days."
        )
    part = full.subset(is_valid)
    known = np.zeros(full.num_items + 1, bool)
    known[train.items] = True
    keep = known[part.items]
    sess = np.repeat(part.session_ids, part.lengths)[keep]
    items = part.items[keep]
    times = part.timestamps[keep]
    ids, counts = np.unique(sess, return_counts=True)
    long = np.isin(sess, ids[counts >= 2])
    if not long.any():
        return train, None
    valid = Sessions.from_events(
        sess[long],
        full.item_vocab[items[long] - 1],
        times[long],
        name=full.name,
        item_vocab=full.item_vocab,
    )
    return train, valid


def _session_data(split, raw_items, valid_days: float) -> SessionData:
    train, valid = carve_validation(split.train, valid_days)
    return SessionData(
        name=split.name,
        full=split.train,
        train=train,
        valid=valid,
        test=split.test,
        raw_items=np.asarray(raw_items),
        settings={**split.settings, "valid_days": valid_days},
    )


def _events_split(session, item, time, *, name, test_days=1.0, valid_days=1.0):
    """GRU4Rec's last-day split of raw events (any id type) into `SessionData`."""
    import pandas as pd

    from tfrec.data.sessions import _to_split, gru4rec_preprocess
    from tfrec.data.userfiles import encode_ids

    session_codes, _ = encode_ids(np.asarray(session))
    item_codes, item_vocab = encode_ids(np.asarray(item))
    events = pd.DataFrame(
        {
            "SessionId": session_codes,
            "ItemId": item_codes,
            "Time": np.asarray(time, np.float64),
        }
    )
    settings = {"min_item_support": 1, "min_session_length": 2, "test_days": test_days}
    train, test, stats = gru4rec_preprocess(events, name=name, **settings)
    split = _to_split(
        name, train, test, dict(settings, split="session_last_day"), stats
    )
    # Sessions index the integer codes; the raw ids behind them are item_vocab.
    return _session_data(split, item_vocab[split.train.item_vocab], valid_days)


def load_sessions(source) -> SessionData:
    """`SessionData` of a catalogue set or the user's own session file."""
    from tfrec.data import DataError
    from tfrec.data.sessions import (
        DIGINETICA_SETTINGS,
        load_diginetica,
        load_yoochoose,
    )

    split = source.split or "session_last_day"
    if split != "session_last_day":
        raise ValueError(
            f"GRU4Rec splits sessions by time only: split must be 'session_last_day'. "
            f"Received: split={split!r}"
        )
    if source.file:
        from tfrec.data.sources import source_table

        table = source_table(source, required=("session", "item", "time"))
        name = Path(source.file).name
        try:
            return _events_split(
                table["session"].to_numpy(),
                table["item"].to_numpy(),
                table["time"].to_numpy(),
                name=name,
            )
        except DataError:
            sizes = table.groupby("session").size()
            span = (table["time"].max() - table["time"].min()) / 86400.0
            raise DataError(
                f"{source.file}: too few sessions to split: the session_last_day "
                "split keeps the sessions ending in the last day for test and those "
                "ending in the day before for validation, so it needs sessions of "
                "2+ clicks on at least three days (`time` in Unix seconds or "
                f"dates); the file has {int((sizes >= 2).sum())} such session(s) "
                f"over {span:.2f} day(s)."
            ) from None
    if source.dataset == "yoochoose-rsc15-100k-sample":
        data = load_yoochoose(source.data_dir)
        return _session_data(data, data.train.item_vocab, 1.0)
    if source.dataset == "diginetica-srgnn-sample":
        data = load_diginetica(source.data_dir)
        days = float(DIGINETICA_SETTINGS["test_days"])
        return _session_data(data, data.train.item_vocab, days)
    raise ValueError(
        f"The gru4rec recipe trains on click sessions: use one of "
        f"{', '.join(SESSION_DATASETS)} or --data FILE with session, item and time "
        f"columns. Received: {source.dataset!r}"
    )


def synthetic_sessions(seed: int = 0, *, num_items: int = 30, num_sessions: int = 240):
    """Tiny sessions with structure (mostly ``i -> i + 1``) over 12 days."""
    rng = np.random.default_rng(seed)
    session, item, time = [], [], []
    starts = np.sort(rng.uniform(0, 12 * 86400.0, num_sessions))
    for s, t0 in enumerate(starts):
        length = int(rng.integers(3, 9))
        current = int(rng.integers(0, num_items))
        for t in range(length):
            session.append(s)
            item.append(f"item_{current}")
            time.append(t0 + 60.0 * t)
            step = 1 if rng.random() < 0.85 else int(rng.integers(2, num_items))
            current = (current + step) % num_items
    return _events_split(session, item, time, name="synthetic")


# --------------------------------------------------------------------------- config


@dataclass
class GRU4RecConfig(TrainSettings):
    """GRU4Rec settings, with the official code's names and defaults.

    The builder arguments (``layers``, ``embedding_dim``,
    ``constrained_embedding``, ``dropout_embed``, ``dropout_hidden`` and
    ``gru4rec_topk``'s list length ``k``) are settings of all three models, since
    one run builds every graph.

    Attributes:
        epochs: The official ``n_epochs``.
        batch_size: Session-parallel slots.
        optimizer: ``adagrad_momentum`` (the official ``IndexedAdagradM``) or a
            `tfrec.training.make_optimizer` name.
        learning_rate: Step size.
        momentum: Momentum of ``adagrad_momentum`` (also of ``momentum`` /
            ``nesterov`` when > 0).
        loss: ``cross-entropy``, ``bpr-max`` or ``top1-max``.
        n_sample: Extra popularity-sampled negatives per step.
        sample_alpha: Popularity exponent of the sampling.
        logq: logQ correction strength (cross-entropy).
        bpreg: BPR-max score regularisation.
        elu_param: ELU applied to the scores before BPR-max (0: none).
        refit_full: After the ``train`` stage, train afresh on all training
            sessions (validation included) for ``epochs`` epochs (stage
            ``refit``); with ``early_stopping``, for the ``train`` stage's best
            epoch on validation instead.
        steps_per_execution: Steps per compiled call (speed only).
        ks: Cut-offs of Recall@K / MRR@K.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adagrad_momentum"
    learning_rate: float = 0.05
    momentum: float = 0.0
    loss: str = "cross-entropy"
    n_sample: int = 2048
    sample_alpha: float = 0.5
    logq: float = 0.0
    bpreg: float = 1.0
    elu_param: float = 0.0
    refit_full: bool = False
    steps_per_execution: int = 16
    ks: tuple = (5, 10, 20)

    extra_optimizers = ("adagrad_momentum",)

    def validate(self) -> None:
        from tfrec.training.session import LOSSES

        super().validate()
        if self.loss not in LOSSES:
            raise ValueError(
                f"`loss` must be one of {LOSSES}. Received: loss={self.loss!r}"
            )
        for name in ("n_sample", "steps_per_execution"):
            value = getattr(self, name)
            low = 0 if name == "n_sample" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"`{name}` must be an int >= {low}. Received: {name}={value!r}"
                )
        if (
            not isinstance(self.momentum, (int, float))
            or not 0.0 <= self.momentum < 1.0
        ):
            raise ValueError(
                f"`momentum` must be in [0, 1). Received: {self.momentum!r}"
            )
        for name in ("sample_alpha", "logq", "bpreg", "elu_param"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number >= 0. Received: {value!r}")


_OFFICIAL = (
    "official GRU4Rec paramfiles/{} (hidasib/GRU4Rec_PyTorch_Official d1fc311), "
    "unchanged; trained on every training session (refit_full), as the README's "
    "GRU4Rec table (reports/gru4rec.md)"
)
_RSC15 = {
    "loss": "cross-entropy",
    "constrained_embedding": True,
    "embedding_dim": 0,
    "elu_param": 0.0,
    "layers": (100,),
    "epochs": 10,
    "batch_size": 32,
    "dropout_embed": 0.0,
    "dropout_hidden": 0.4,
    "optimizer": "adagrad_momentum",
    "learning_rate": 0.2,
    "momentum": 0.2,
    "n_sample": 2048,
    "sample_alpha": 0.5,
    "bpreg": 0.0,
    "logq": 1.0,
    "refit_full": True,
}
_DIGINETICA = {
    "loss": "bpr-max",
    "constrained_embedding": True,
    "embedding_dim": 0,
    "elu_param": 1.0,
    "layers": (512,),
    "epochs": 10,
    "batch_size": 128,
    "dropout_embed": 0.5,
    "dropout_hidden": 0.3,
    "optimizer": "adagrad_momentum",
    "learning_rate": 0.05,
    "momentum": 0.15,
    "n_sample": 2048,
    "sample_alpha": 0.3,
    "bpreg": 0.9,
    "logq": 0.0,
    "refit_full": True,
}


def _optimizer(config: GRU4RecConfig):
    from tfrec.training.optimizers import make_optimizer
    from tfrec.training.session import AdagradMomentum

    if config.optimizer == "adagrad_momentum":
        return AdagradMomentum(
            learning_rate=config.learning_rate, momentum=config.momentum
        )
    extra = {}
    if config.optimizer in ("momentum", "nesterov") and config.momentum > 0:
        extra["momentum"] = config.momentum
    return make_optimizer(config.optimizer, config.learning_rate, **extra)


# --------------------------------------------------------------------------- recipe


@register_recipe
class GRU4RecRecipe(Recipe):
    name = "gru4rec"
    models = ("gru4rec", "gru4rec_topk", "gru4rec_step")
    data_kind = "sessions"
    needs_content = False
    default_dataset = "yoochoose-rsc15-100k-sample"
    datasets = SESSION_DATASETS
    splits = ("session_last_day",)
    query = "session"
    Config = GRU4RecConfig
    presets = (
        Preset(
            "rsc15_xe_shared_100_best",
            _RSC15,
            _OFFICIAL.format("rsc15_xe_shared_100_best.py"),
            dataset="yoochoose-rsc15-100k-sample",
        ),
        Preset(
            "rsc15_xe_shared_100",
            _RSC15,
            "the same as rsc15_xe_shared_100_best (the shorter name of issue 9): "
            + _OFFICIAL.format("rsc15_xe_shared_100_best.py"),
            dataset="yoochoose-rsc15-100k-sample",
        ),
        Preset(
            "diginetica_bprmax_shared_best",
            _DIGINETICA,
            _OFFICIAL.format("diginetica_bprmax_shared_best.py")
            + "; the sample has fewer items (about 1,950) than n_sample, so "
            "negatives repeat (sampling with replacement, as the official code)",
            dataset="diginetica-srgnn-sample",
        ),
    )
    test_config = {
        "epochs": 2,
        "batch_size": 8,
        "layers": (8,),
        "n_sample": 16,
        "learning_rate": 0.1,
        "k": 5,
        "steps_per_execution": 4,
    }

    # ---- config ------------------------------------------------------------
    def builder_kwargs(self, model):
        # One run builds all three graphs, so every model of the recipe takes the
        # step model's hyperparameters and gru4rec_topk's `k`.
        from tfrec.registry import model_info

        step = super().builder_kwargs(STEP)
        topk = super().builder_kwargs("gru4rec_topk")
        model_info(model)  # raises for an unknown name
        return {**step, "k": topk["k"]}

    def size_kwargs(self):
        return ("num_items",)

    # ---- data --------------------------------------------------------------
    def load_data(self, source, config):
        return load_sessions(source)

    def synthetic_data(self, seed=0):
        return synthetic_sessions(seed)

    def describe(self, data):
        def part(s, label):
            return f"{s.num_events} {label} clicks / {s.num_sessions} sessions"

        parts = [f"{data.name}: {data.num_items} items", part(data.train, "train")]
        if data.valid is not None:
            parts.append(part(data.valid, "validation"))
        parts.append(part(data.test, "test"))
        return ", ".join(parts)

    def vocab(self, data):
        return Vocab(items=[""] + [str(r) for r in data.raw_items])

    # ---- training ----------------------------------------------------------
    def stage_names(self, model, config):
        return ("train", "refit") if config.refit_full else ("train",)

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        import keras

        from tfrec.data.sessions import session_parallel_dataset
        from tfrec.evaluation.session import evaluate_next_click
        from tfrec.models.gru4rec import gru4rec_step, serving_models, step_model_config
        from tfrec.training.session import (
            GRU4RecTrainer,
            ResetStateCallback,
            item_counts,
        )

        # Each stage's initial weights and samples depend on the seed only (not on
        # whether an earlier stage trained or was loaded), so a resumed run matches
        # and the refit stage is a fresh model trained on all training sessions.
        keras.utils.set_random_seed(int(config.seed))
        sessions = data.full if stage == "refit" else data.train
        arch = {k: v for k, v in model_kwargs.items() if k in _ARCH}
        k = int(model_kwargs.get("k", 20))
        step = gru4rec_step(data.num_items, **arch)
        trainer = GRU4RecTrainer(
            step,
            item_counts(sessions),
            batch_size=config.batch_size,
            loss=config.loss,
            n_sample=config.n_sample,
            sample_alpha=config.sample_alpha,
            logq=config.logq,
            bpreg=config.bpreg,
            elu_param=config.elu_param,
            seed=config.seed,
        )
        trainer.compile(
            optimizer=_optimizer(config), steps_per_execution=config.steps_per_execution
        )
        validate = None
        if stage == "train" and data.valid is not None:
            cutoffs = tuple(config.ks)

            def validate() -> dict:
                out = evaluate_next_click(step, data.valid, cutoffs=cutoffs)
                return {
                    m: v for m, v in out.items() if m.startswith(("recall@", "mrr@"))
                }

        last = stage == self.stage_names(model, config)[-1]

        def serving() -> dict[str, ServingGraph]:
            graphs = serving_models(step, k=k)
            kwargs = step_model_config(step)
            kwargs["layers"] = list(kwargs["layers"])
            return {
                name: ServingGraph(
                    name,
                    {**kwargs, "k": k} if name == "gru4rec_topk" else dict(kwargs),
                    m,
                )
                for name, m in graphs.items()
            }

        epochs = config.epochs
        if stage == "refit" and config.early_stopping and previous["train"].best_epoch:
            # Early stopping chose the epoch count on validation; refit for it.
            epochs = int(previous["train"].best_epoch)
        return StagePlan(
            trainer=trainer,
            dataset=session_parallel_dataset(sessions, config.batch_size),
            epochs=epochs,
            early_stopping=stage != "refit",
            models={STEP: step},
            callbacks=[ResetStateCallback()],
            validate=validate,
            monitor=f"recall@{max(config.ks)}" if validate else None,
            serving=serving if last else None,
        )

    # ---- evaluation and use ------------------------------------------------
    def evaluate(self, model, serving, data, config, part="test"):
        from tfrec.evaluation.session import evaluate_next_click

        sessions = {"test": data.test, "valid": data.valid}.get(part)
        if part not in ("test", "valid"):
            raise ValueError(f"`part` must be 'valid' or 'test'. Received: {part!r}")
        if sessions is None:
            return {}
        out = evaluate_next_click(
            serving[STEP].model, sessions, cutoffs=tuple(config.ks)
        )
        return {
            "next_click": {
                m: (int(v) if m == "queries" else float(v))
                for m, v in out.items()
                if m == "queries" or m.startswith(("recall@", "mrr@"))
            }
        }

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        """Next items for a session given as raw item ids (oldest first);
        ``exclude_seen`` leaves out the session's own items."""
        from tfrec.recipes.interactions import item_index, top_k

        if isinstance(query, str):
            query = [q for q in (t.strip() for t in query.split(",")) if q]
        clicks = (
            list(query) if isinstance(query, (list, tuple, np.ndarray)) else [query]
        )
        if not clicks:
            raise ValueError("A session query needs at least one item id.")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int. Received: {k!r}")
        indices = [item_index(vocab, c) for c in clicks]
        step = serving[STEP].model
        state = np.zeros((1, int(step.input["hidden_state"].shape[-1])), np.float32)
        for i in indices:
            out = step(
                {"item_id": np.array([i], np.int64), "hidden_state": state},
                training=False,
            )
            state = np.asarray(out["new_hidden_state"])
        scores = np.asarray(out["scores"])[0]
        exclude = {0, *indices} if exclude_seen else {0}
        return top_k(scores, vocab, k, sorted(exclude))
