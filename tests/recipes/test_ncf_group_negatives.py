"""The NCF recipe's `group_negatives` setting reaches its in-graph sampler and
trains through the runner."""

from __future__ import annotations

import json

import numpy as np


def test_group_negatives_setting_groups_the_batches_and_trains(tmp_path):
    import tfrec
    from tfrec.recipes.ncf import NCFConfig, NCFRecipe

    recipe = NCFRecipe()
    run = tmp_path / "run"
    tfrec.train("neumf", recipe.synthetic_data(0), out=run, group_negatives=True,
                **{**recipe.test_config, "epochs": 3})
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["group_negatives"] is True
    losses = [r["loss"] for r in json.loads((run / "history.json").read_text())["epochs"]]
    assert losses[-1] < losses[0]
    assert NCFConfig().group_negatives is False  # opt-in

    class Split:  # the fields build_stage reads
        train = {"user_id": np.repeat(np.arange(8), 3),
                 "item_id": np.tile(np.arange(3), 8)}
        num_users, num_items, valid = 8, 12, None

    cfg = NCFConfig(batch_size=10, group_negatives=True)
    plan = recipe.build_stage("neumf", "neumf", Split(), cfg, {"embedding_dim": 4}, {})
    _, y = next(iter(plan.dataset))
    np.testing.assert_array_equal(y["score"].numpy(), [1, 0, 0, 0, 0] * 2)
