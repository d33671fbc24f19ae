"""The tables the Chapter 2 notebooks build from helpers.rl (the masks and sweep summaries)."""
from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from helpers import rl

METHODS = ["SNIP", "GraSP"]


def layers_frame(seeds: int = 2) -> pd.DataFrame:
    """A layer_densities-like table: two settings, the four networks, three layers each (the encoder's heads)."""
    rng, rows = np.random.default_rng(0), []
    for env in ("Hopper-v5", "HalfCheetah-v5"):
        for network in ("actor", "critic", "vae_encoder", "vae_decoder"):
            names = ["l1", "mean", "log_std"] if network == "vae_encoder" else ["l1", "l2", "l3"]
            for method in METHODS:
                for seed in range(seeds):
                    for position, layer in enumerate(names):
                        total = 100 * (position + 1)
                        kept = int(rng.integers(1, total))
                        rows.append(dict(env=env, algo="BCQ", network=network, method=method, seed=seed, layer=layer,
                                         position=position, kept=kept, total=total, density=kept / total))
    return pd.DataFrame(rows)


def test_last_layer_summary_and_table_read_each_setting():
    for seeds in (2, 3):
        layers = layers_frame(seeds)
        summary = rl.last_layer_summary(layers)
        table = rl.last_layer_table(summary, METHODS)
        assert len(summary) == 16 and len(table) == 8  # 2 envs x 4 networks, per method / per setting
        for _, row in summary.iterrows():
            key = (row["env"], row["algo"], row["network"])
            assert table.loc[key, f"{row['method']}: last layer kept"] == (
                f"{100 * row['last_mean']:.1f} ± {100 * row['last_std']:.1f}%")
            assert table.loc[key, f"{row['method']}: densest / sparsest layer"] == f"{row['spread']:.0f}x"
        means = summary.pivot_table(index=["env", "algo", "network"], columns="method", values="last_mean")
        assert (table["GraSP > SNIP (mean)"] == np.where(means["GraSP"] > means["SNIP"], "yes", "no")).all()
    assert list(table.columns)[:2] == ["SNIP: last layer kept", "GraSP: last layer kept"]


def sweep_frame(evaluations: int = 2) -> pd.DataFrame:
    """A run_sweep-like result with a task column, evaluated at ``evaluations`` steps."""
    rng, rows = np.random.default_rng(1), []
    for task in ("pendulum-expert", "hopper-expert"):
        for algorithm in ("BC", "BCQ"):
            last = 100 if algorithm == "BC" else 60
            for step in np.linspace(last / evaluations, last, evaluations).astype(int):
                for seed in (0, 1):
                    rows.append(dict(task=task, algorithm=algorithm, method="dense", sparsity=0.0, seed=seed,
                                     step=int(step), score=float(rng.normal(80, 10))))
                    for method in ("snip", "grasp"):
                        for sparsity in (0.9, 0.95):
                            rows.append(dict(task=task, algorithm=algorithm, method=method, sparsity=sparsity,
                                             seed=seed, step=int(step), score=float(rng.normal(60, 20))))
    return pd.DataFrame(rows)


def test_final_scores_and_score_table_equal_the_notebooks_former_code():
    for evaluations in (1, 3):
        frame = sweep_frame(evaluations)
        final = frame[frame["step"] == frame.groupby(["task", "algorithm"])["step"].transform("max")].copy()
        pd.testing.assert_frame_equal(rl.final_scores(frame), final)
        table = final.groupby(["task", "algorithm", "method", "sparsity"])["score"].agg(
            ["mean", "min", "max"]).unstack("sparsity")
        table = table.reorder_levels([1, 0], axis=1).sort_index(axis=1)
        table.columns = [f"{s:.0%} {stat}" for s, stat in table.columns]
        pd.testing.assert_frame_equal(rl.score_table(final), table)
    assert rl.final_scores(frame)["step"].nunique() == 2  # BC's last step and BCQ's
    assert list(rl.score_table(final).columns)[:3] == ["0% max", "0% mean", "0% min"]


def test_last_layer_table_works_with_one_seed():
    rows = [dict(env="H", algo="BCQ", network="actor", method=m, last_mean=0.5, last_std=np.nan, spread=3.0)
            for m in ("SNIP", "GraSP")]
    table = rl.pruned_agents.last_layer_table(pd.DataFrame(rows), ["SNIP", "GraSP"])
    assert table.iloc[0]["SNIP: last layer kept"] == "50.0 ± 0.0%"


def test_last_layer_arms_pair_seeds_and_networks_and_the_density_gap():
    layers = layers_frame(3)
    settings, last, spread = rl.last_layer_arms(layers)
    assert len(settings) == 8 and last["SNIP"].shape == (3, 8) and spread["GraSP"].shape == (3, 8)
    shares = rl.last_layer_shares(layers)
    env, network = settings[2]
    row = shares[(shares["env"] == env) & (shares["network"] == network) & (shares["method"] == "GraSP")
                 & (shares["seed"] == 1)].iloc[0]
    assert last["GraSP"][1, 2] == row["last"] and spread["GraSP"][1, 2] == row["spread"]
    exact = layers.assign(kept=layers["total"] // 20)  # every layer at 5%: the gap is 0
    assert rl.mask_density_gap(exact, 0.05) == 0.0
    assert rl.mask_density_gap(layers, 0.05) > 0.1
    with pytest.raises(ValueError, match="no layers"):
        rl.last_layer_arms(layers, "BC")


def test_episode_scores_are_seeds_by_episodes_in_seed_order():
    rows = []
    for seed in (2, 0, 1):
        for method, sparsity, level in (("dense", 0.0, 90.0), ("snip", 0.95, 88.0), ("snip", 0.9, 20.0)):
            eps = [level + seed + k for k in range(4)]
            rows.append(dict(task="T", algorithm="BC", method=method, sparsity=sparsity, seed=seed, step=10,
                             score=float(np.mean(eps)), episode_scores=eps))
    final = pd.DataFrame(rows)
    dense = rl.episode_scores(final, "T", "BC", "dense")
    assert dense.shape == (3, 4) and dense[0, 0] == 90.0 and dense[2, 3] == 95.0
    assert rl.episode_scores(final, "T", "BC", "snip", 0.95)[1].tolist() == [89.0, 90.0, 91.0, 92.0]
    with pytest.raises(ValueError, match="no final scores"):
        rl.episode_scores(final, "T", "BCQ", "snip", 0.95)
