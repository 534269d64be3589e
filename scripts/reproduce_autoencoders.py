"""Reproduces AutoRec (rating prediction) and CDAE vs NeuMF vs MF (top-N) through
the runner: a loop over the recipes' presets and seeds, nothing more.

Protocols (see /work/shared/TARGETS.md):

* AutoRec (Sedhain et al. 2015), presets ``autorec_*`` (``tfrec presets autorec``):
  a random split of the ratings, 10% test and 10% of all ratings carved from
  training for validation, a new split per seed (``split_seed = seed``); RMSE on
  the test ratings, clipped to [1, 5] (the unclipped RMSE too); a test pair whose
  user or item has no input rating is predicted as 3. ML-1M is ``ncf-ml-1m``
  (train + test files = all 1,000,209 ratings), ML-100K ``movielens-100k``.
* CDAE vs NeuMF vs MF: RecBole's general protocol on ML-1M (ratings >= 3, 10-core,
  per-user random 80/10/10, a new split per seed), full ranking over all items
  excluding the user's train (and valid) items, Recall/NDCG/Hit/MRR@10. CDAE uses
  preset ``cdae_recbole``; NeuMF and MF ``neumf_recbole_cpu`` / ``mf_recbole_cpu``
  on the same split (the CDAE recipe builds it; the NCF recipe has no ``recbole``
  split, so it is passed in memory).

Settings come from the presets only (their provenance: ``tfrec presets MODEL``)
and are chosen on validation with ``tfrec select MODEL --preset P --grid
l2=100,200,400`` (the test part is never read there); every run here reads its
test part once, at the end. Writes ``reports/autoencoders.{json,md}``.

Example:
    python scripts/reproduce_autoencoders.py --seeds 0 1 2
    python scripts/reproduce_autoencoders.py --seeds 0 --only cdae neumf mf --append
    python scripts/reproduce_autoencoders.py --seeds 0 --only autorec_item_ml100k \\
        --set epochs=1 --out /tmp/ae-smoke --report /tmp/ae-smoke/report
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from repro import Row, parser, run_rows, table, write_report

RANDOM_SPLIT = {"split": "random", "test_fraction": 0.1, "valid_fraction": 0.1}
RECBOLE_SPLIT = {"split": "recbole", "test_fraction": 0.1, "valid_fraction": 0.1}


@functools.lru_cache(maxsize=4)
def recbole_ml1m(seed: int, data_dir: str | None = None):
    """The RecBole split of ML-1M for ``seed``, built by the CDAE recipe from the
    ``cdae_recbole`` preset's filter (the same split as the CDAE row's run)."""
    import tfrec
    from tfrec.recipes.base import DataSource

    recipe = tfrec.model_info("cdae").recipe
    config, _ = recipe.make_config("cdae", preset="cdae_recbole")
    source = DataSource(dataset="ncf-ml-1m", data_dir=data_dir, split_seed=seed,
                        **RECBOLE_SPLIT)
    return recipe.load_data(source, config)


def _autorec(label: str, preset: str, dataset: str) -> Row:
    return Row(label, "autorec", preset, RANDOM_SPLIT, dataset, split_seed=True)


RATING_ROWS = [
    _autorec("autorec_item_ml1m", "autorec_ml1m", "ncf-ml-1m"),
    _autorec("autorec_user_ml1m", "autorec_user_ml1m", "ncf-ml-1m"),
    _autorec("autorec_deep_ml1m", "autorec_deep_ml1m", "ncf-ml-1m"),
    _autorec("autorec_item_ml100k", "autorec_ml100k", "movielens-100k"),
    _autorec("autorec_user_ml100k", "autorec_user_ml100k", "movielens-100k"),
]
TOPN_ROWS = [
    Row("cdae", "cdae", "cdae_recbole", RECBOLE_SPLIT, "ncf-ml-1m", split_seed=True),
    Row("neumf", "neumf", "neumf_recbole_cpu", data=recbole_ml1m),
    Row("mf", "mf", "mf_recbole_cpu", data=recbole_ml1m),
]
ROWS = RATING_ROWS + TOPN_ROWS

TARGETS = {  # /work/shared/TARGETS.md
    "autorec_item_ml1m": "0.831 (Sedhain et al. 2015)",
    "autorec_user_ml1m": "0.874 (Sedhain et al. 2015)",
    "autorec_deep_ml1m": "0.827 (Sedhain et al. 2015)",
    "cdae": "Recall 0.1936, NDCG 0.2500, Hit 0.7515, MRR 0.4359 (RecBole)",
    "neumf": "NDCG 0.2393, Hit 0.7149 (RecBole)",
}
RATING_COLUMNS = [
    ("RMSE", "rating", "rmse"),
    ("RMSE unclipped", "rating", "rmse_unclipped"),
]
TOPN_COLUMNS = [
    ("Recall@10", "full", "recall@10"),
    ("NDCG@10", "full", "ndcg@10"),
    ("Hit@10", "full", "hr@10"),
    ("MRR@10", "full", "mrr@10"),
]

NOTES = (
    "ML-1M data: `ncf-ml-1m`, the NCF paper's train file (reconstructed, see "
    "data/ncf-ml-1m/SOURCE.md) plus its test file: all 1,000,209 ML-1M ratings with "
    "NCF's re-indexed user/item ids (user = MovieLens UserID - 1, item = "
    "first-appearance order). `ratings.dat` itself is not in the shared data. The "
    "re-indexing does not matter to AutoRec or the RecBole split; 55 ratings of 32 "
    "rarely rated items may carry permuted item ids within 9 groups (SOURCE.md).",
    "Every run goes through the runner (`tfrec.train`) with the preset named in its "
    "row and nothing else (`--set KEY=VALUE` overrides a setting of every row, e.g. "
    "`epochs=1` for a smoke run; it is then in the JSON's `settings`). Settings are "
    "chosen on validation only, with `tfrec select MODEL --preset P --grid "
    "KEY=V1,V2`, which never reads the test part; each run reads its test part "
    "once, at the end. Where every setting came from is its preset's provenance "
    "(listed below; `tfrec presets autorec`, `tfrec presets cdae`, `tfrec presets "
    "neumf`): a provenance that says a value was chosen on a test split marks a "
    "setting not yet re-chosen on validation, and its row's test numbers are "
    "optimistic.",
    "AutoRec: a new random split of the ratings per seed (the paper: 5 splits of "
    "90/10): 10% test (the same test rows as a plain 90/10 split with that seed), "
    "10% of all ratings carved from training for validation, the rest trains. At "
    "test time the input vectors hold every non-test rating (train and "
    "validation). Test pairs whose user or item has no input rating are predicted "
    "as 3, the paper's default rating; their number is in the JSON "
    "(`metrics.rating.defaulted_pairs`). Predictions are clipped to [1, 5] (the "
    "paper does not say; the unclipped RMSE is reported beside it).",
    "AutoRec optimiser: the paper used L-BFGS / RProp (full batch). Here: Adam on "
    "mini-batches of vectors with the preset's learning-rate schedule "
    "(`lr_schedule`: cosine decay to 0, or constant) and epoch budget, validation "
    "RMSE every epoch. The loss is the "
    "paper's objective (Eq. 3: squared error on observed ratings summed over all "
    "training vectors, estimated per batch as N/b times the batch sum, plus "
    "lambda/2 times the squared Frobenius norms of the weight matrices), so lambda "
    "has the paper's scale. Deep I-AutoRec is the paper's Table 2 variant "
    "(500-250-500 sigmoid units), same objective.",
    "CDAE: one hidden layer of K units plus the per-user node, dropout corruption "
    "in training only, sigmoid output, log loss summed over *all* items of the "
    "user vector (no negative sampling of zero entries; the paper samples some, "
    "RecBole uses the full vector), Adam. Hidden activation, K and the L2 weight "
    "are the `cdae_recbole` preset's (RecBole's CDAE defaults: ReLU, 64, 0.01; "
    "not the paper's sigmoid); "
    "lambda/2 ||.||^2 on W, W', V and the biases, relative to the per-user mean "
    "loss (the paper's Eq. 5). The input at test time is the user's training "
    "vector; ranking excludes train and valid items.",
    "RecBole split: ratings >= 3, iterative 10-core on users and items, then per "
    "user a random 80/10/10 split with RecBole's rounding (valid and test get "
    "floor(0.1 n), at least 1 each; train the rest). A new split per seed; NeuMF "
    "and MF train on the very split the CDAE recipe builds for that seed (passed "
    "in memory, since the NCF recipe has no `recbole` split).",
    "NeuMF (factors 8, MLP 32-16-8) and MF (dim 16, biases): log loss with 4 fresh "
    "uniform negatives per positive per epoch, Adam, validation on the valid part "
    "every epoch, no early stopping. Their presets are a CPU budget (few epochs, "
    "larger batch and learning rate than NCF's 256 / 0.001), not chosen on data, "
    "so their numbers are a lower bound.",
)


def _presets_text() -> str:
    import tfrec

    lines = ["Presets (values and provenance, as `tfrec presets` shows them):", ""]
    for row in ROWS:
        preset = tfrec.model_info(row.model).recipe.preset(row.preset)
        values = ", ".join(f"{k}={v}" for k, v in preset.values.items())
        source = preset.source.rstrip(".")
        lines.append(f"- `{row.preset}` ({row.label}): {values}. Source: {source}.")
    return "\n".join(lines)


def main(argv=None):
    p = parser(__doc__.split("\n")[0], "autoencoders")
    p.add_argument("--render", nargs="+", default=None, metavar="JSON",
                   help="write the report from these runs' JSON records (no training)")
    args = p.parse_args(argv)
    if args.render:
        import json

        records = [r for path in args.render for r in json.loads(Path(path).read_text())]
    else:
        records = run_rows(ROWS, args)
    header = (
        "# Autoencoders for collaborative filtering: reproduction\n\n"
        "Generated by `scripts/reproduce_autoencoders.py` through `tfrec.train`, "
        f"{time.strftime('%Y-%m-%d')}; numbers are the mean ± sample sd over the "
        "seeds (each seed: a new split and a new initialisation); TF threads "
        f"{args.threads}/{args.threads}, CPU. Every run's settings, metrics and "
        "time are in the JSON."
    )
    rating = {row.label for row in RATING_ROWS}

    def tables(rs: list[dict]) -> str:
        return "\n".join([
            "## AutoRec rating prediction (random split, 10% test, RMSE, lower is better)",
            "",
            table([r for r in rs if r["label"] in rating], RATING_COLUMNS, TARGETS),
            "",
            "## Top-N on ML-1M, RecBole protocol (full ranking, @10)",
            "",
            table([r for r in rs if r["label"] not in rating], TOPN_COLUMNS, TARGETS),
        ])

    def report(rs: list[dict]) -> str:
        notes = "\n".join(f"- {note}" for note in NOTES)
        return f"{tables(rs)}\n\n## Protocol and deviations\n\n{notes}\n\n{_presets_text()}"

    write_report(args, records, header, report)


if __name__ == "__main__":
    main()
