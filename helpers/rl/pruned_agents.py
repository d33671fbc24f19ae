"""Single-shot pruned BCQ / BC agents measured at initialisation (Arnob et al. 2021, Sec. 4.2-4.3, Figs 3-4, Table 1).

:func:`layer_densities` prunes fresh agents with Algorithm 1 (:func:`~helpers.rl.offline.prune_agent`, the sweep's
masks) and counts the weights each layer keeps (Fig. 3); :func:`last_layer_shares` summarises the output layers
(:func:`last_layer_summary` over seeds, :func:`last_layer_table` for reading).
:func:`storage_table` stores the actor, both critics and the VAE in each format of ``helpers.pruning.storage`` and
checks that every file loads back to the model it must reproduce (Table 1); :func:`storage_curve` does it along a
sparsity grid (Fig. 4); :func:`actor_timing` times the sparse actor on the CPU; :func:`last_layer_by_criterion`
compares the share of the last layer kept by SNIP, both signs of GraSP and magnitude.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .. import checks, pruning
from ..metrics import median_seconds
from .networks import BCQNetworks, Transitions, pruning_losses
from .offline import AgentMasks, PRUNING_BATCH, apply_agent_masks, prune_agent

__all__ = ["seeded_agent", "layer_densities", "last_layer_shares", "last_layer_summary", "last_layer_table",
           "last_layer_arms", "mask_density_gap", "stored_networks", "network_outputs",
           "storage_table", "storage_comparison", "storage_curve", "actor_timing", "last_layer_by_criterion",
           "STORED_NETWORKS"]

#: The networks of Table 1, by the name of its rows: the actor, the twin critic (both), the VAE (encoder + decoder).
STORED_NETWORKS = {"actor": "Actor", "critic": "Critic (both)", "vae": "VAE"}


def seeded_agent(data: Any, seed: int, cloning: bool = False, width: float = 1.0) -> BCQNetworks:
    """A fresh agent for ``data``'s sizes, initialised after ``torch.manual_seed(seed)`` (as sfujim/BCQ seeds torch
    before building its networks), so the same seed gives the same initial weights."""
    torch.manual_seed(checks.integer("seed", seed, low=0))
    return BCQNetworks(data.state_dim, data.action_dim, data.max_action, cloning=cloning, width=width)


def layer_densities(datasets: Mapping[str, Any], algorithms: Sequence[str], seeds: Sequence[int],
                    methods: Mapping[str, str], density: float,
                    keep: tuple[str, str, int] | None = None) -> tuple[pd.DataFrame, dict[str, AgentMasks]]:
    """Fig. 3 of Arnob et al.: per task, algorithm ("BCQ" / "BC"), seed and method, Algorithm 1's masks of a fresh
    agent at ``density`` and every layer's kept / total weights.

    ``methods`` maps a method of ``helpers.pruning.SCORERS`` to its label in the table. Per seed, one generator
    seeded with the seed draws the SNIP batch, then the GraSP batch (the order of ``methods``). Returns the table
    (``env, algo, seed, method, network, layer, position, kept, total, density``) and the masks of the agent
    ``keep = (env, algorithm, seed)`` by method.
    """
    pruning.check_density(density)
    rows, kept = [], {}
    for env, data in datasets.items():
        for algo in algorithms:
            for seed in seeds:
                agent = seeded_agent(data, seed, cloning=algo == "BC")
                g = torch.Generator().manual_seed(seed)
                for method, label in methods.items():
                    masks = prune_agent(agent, method, density, data, g)
                    if keep == (env, algo, seed):
                        kept[method] = masks
                    for network, m in masks.items():
                        for position, (layer, (n_kept, total)) in enumerate(pruning.layer_density(m).items()):
                            rows.append(dict(env=env, algo=algo, seed=seed, method=label, network=network,
                                             layer=layer.removesuffix(".weight"), position=position, kept=n_kept,
                                             total=total))
    frame = pd.DataFrame(rows)
    frame["density"] = frame["kept"] / frame["total"]
    return frame, kept


def last_layer_shares(layers: pd.DataFrame) -> pd.DataFrame:
    """Per setting and seed of a :func:`layer_densities` table: the share of the output layer kept (the encoder's
    two heads, ``mean`` and ``log_std``, together) and the ratio of the densest to the sparsest layer."""
    out = []
    keys = ["env", "algo", "network", "method", "seed"]
    for key, part in layers.groupby(keys):
        heads = ["mean", "log_std"] if key[2] == "vae_encoder" else [part.sort_values("position")["layer"].iloc[-1]]
        last = part[part["layer"].isin(heads)]
        out.append(dict(zip(keys, key), last=last["kept"].sum() / last["total"].sum(),
                        spread=part["density"].max() / max(part["density"].min(), 1e-12)))
    return pd.DataFrame(out)


def last_layer_summary(layers: pd.DataFrame) -> pd.DataFrame:
    """Per setting and method of a :func:`layer_densities` table: the output layer's share kept (mean and std over
    seeds, ``last_mean``, ``last_std``) and the mean densest / sparsest layer ratio (``spread``)."""
    return last_layer_shares(layers).groupby(["env", "algo", "network", "method"]).agg(
        last_mean=("last", "mean"), last_std=("last", "std"), spread=("spread", "mean")).reset_index()


def last_layer_table(summary: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """The readable table of a :func:`last_layer_summary`: each method's last layer kept (mean ± std, %), whether
    GraSP keeps more than SNIP, and each method's densest / sparsest layer ratio, one row per setting."""
    summary = summary.assign(last_std=summary["last_std"].fillna(0.0))  # one seed: no spread (pivot drops NaN)
    wide = summary.pivot_table(index=["env", "algo", "network"], columns="method",
                               values=["last_mean", "last_std", "spread"])
    table = pd.DataFrame({
        f"{m}: last layer kept": [f"{100 * a:.1f} ± {100 * (0 if np.isnan(s) else s):.1f}%" for a, s in
                                  zip(wide[("last_mean", m)], wide[("last_std", m)])] for m in methods},
        index=wide.index)
    table["GraSP > SNIP (mean)"] = np.where(wide[("last_mean", "GraSP")] > wide[("last_mean", "SNIP")], "yes", "no")
    for m in methods:
        table[f"{m}: densest / sparsest layer"] = [f"{v:.0f}x" for v in wide[("spread", m)]]
    return table


def last_layer_arms(layers: pd.DataFrame, algo: str = "BCQ") -> tuple[list[tuple[str, str]], dict[str, np.ndarray],
                                                                     dict[str, np.ndarray]]:
    """The per-seed numbers of Fig. 3's claim for one algorithm of a :func:`layer_densities` table, as arrays
    ``[seeds, settings]`` (a setting: a task's network, in the order of the returned list of ``(env, network)``):
    the last layer's share kept, and the densest / sparsest layer ratio, per method."""
    shares = last_layer_shares(layers[layers["algo"] == algo])
    if shares.empty:
        raise ValueError(f"no layers of algorithm {algo!r}")
    settings = sorted({(e, n) for e, n in zip(shares["env"], shares["network"])})
    last, spread = {}, {}
    for method, part in shares.groupby("method"):
        wide = part.pivot_table(index="seed", columns=["env", "network"], values=["last", "spread"])
        last[method] = wide["last"][settings].to_numpy(dtype=float)
        spread[method] = wide["spread"][settings].to_numpy(dtype=float)
    return settings, last, spread


def mask_density_gap(layers: pd.DataFrame, density: float, algo: str = "BCQ") -> float:
    """The largest gap, over the tasks, seeds, methods and networks of ``algo`` in a :func:`layer_densities` table,
    between a network's kept share of weights and ``density`` (0 when every global top-k kept exactly ``density``)."""
    kept = layers[layers["algo"] == algo].groupby(["env", "seed", "method", "network"])[["kept", "total"]].sum()
    if kept.empty:
        raise ValueError(f"no layers of algorithm {algo!r}")
    return float((kept["kept"] / kept["total"] - density).abs().max())


def stored_networks(make_agent: Callable[[], BCQNetworks], masks: AgentMasks | None = None) -> dict[str, nn.Module]:
    """The actor, twin critic and VAE of ``make_agent()``, pruned with ``masks`` (Algorithm 1: ``Q2`` takes
    ``Q1``'s mask; :func:`~helpers.rl.offline.apply_agent_masks`), by the keys of :data:`STORED_NETWORKS`."""
    agent = make_agent()
    if masks is not None:
        apply_agent_masks(agent, masks)
    return {"actor": agent.actor, "critic": agent.critic, "vae": agent.vae}


@torch.no_grad()
def network_outputs(name: str, module: nn.Module, batch: Transitions) -> list[Tensor]:
    """Every output of a stored network on ``batch`` (the VAE samples its latent from a generator seeded 0)."""
    if name == "vae":
        return list(module(batch.state, batch.action, generator=torch.Generator().manual_seed(0)))
    out = module(batch.state, batch.action)
    return list(out) if isinstance(out, tuple) else [out]


def _loaded(template: nn.Module, weights: Mapping[str, Tensor]) -> nn.Module:
    module = copy.deepcopy(template)
    module.load_state_dict(weights)
    return module


def storage_table(make_agent: Callable[[], BCQNetworks], models: Mapping[str, tuple[AgentMasks | None, Sequence[str]]],
                  batch: Transitions) -> pd.DataFrame:
    """Table 1 of Arnob et al.: file sizes of the stored networks of ``make_agent()`` in each format.

    ``models`` maps a label to ``(masks or None, formats)``; the first model must be the dense one with the
    ``"dense"`` format (the reference of the ``x smaller than dense`` column). Every file is decoded, loaded into
    a fresh network and compared with ``torch.equal`` on ``batch`` to the model it must reproduce (the pruned fp32
    model for a lossless format, its fp16-rounded weights for ``-fp16``): column ``identical``; and
    ``relative_output_change``, the largest output change against fp32 over the output's largest magnitude.
    """
    template = stored_networks(make_agent)
    rows = []
    for label, (masks, formats) in models.items():
        for fmt in formats:
            for name, module in stored_networks(make_agent, masks).items():
                weights = pruning.pruned_state_dict(module)
                fp32 = network_outputs(name, module, batch)
                reloaded = network_outputs(name, _loaded(template[name], weights), batch)
                if fmt in pruning.LOSSLESS_FORMATS and not all(torch.equal(a, b) for a, b in zip(fp32, reloaded)):
                    raise RuntimeError(f"{label} {name}: pruned_state_dict does not reproduce the pruned model")
                blob = pruning.encode_weights(weights, fmt)
                decoded = network_outputs(name, _loaded(template[name], pruning.decode_weights(blob)), batch)
                want = network_outputs(name, _loaded(template[name], pruning.decoded_reference(weights, fmt)), batch)
                rows.append(dict(model=label, format=fmt, network=name, bytes=len(blob),
                                 identical=all(torch.equal(a, b) for a, b in zip(decoded, want)),
                                 relative_output_change=max(float((a - b).abs().max() / b.abs().max())
                                                            for a, b in zip(decoded, fp32))))
    table = pd.DataFrame(rows)
    dense = table[(table["model"] == next(iter(models))) & (table["format"] == "dense")].set_index("network")["bytes"]
    table["MB"] = table["bytes"] / 1e6
    table["x smaller than dense"] = table.apply(lambda r: dense[r["network"]] / r["bytes"], axis=1)
    return table


def storage_comparison(storage: pd.DataFrame, paper: Mapping[tuple[str, str], Mapping[str, float]],
                       sparsity: float) -> pd.DataFrame:
    """Table 1 beside the paper's: one row per model and format of a :func:`storage_table` (``paper`` maps
    ``(model, format)`` to the paper's MB per network), with ours, the paper's and the ratio to the dense file per
    network, and whether every file loaded back with identical outputs."""
    out = {}
    for (model, fmt), part in storage.groupby(["model", "format"], sort=False):
        label = {"dense": "Dense Model" if fmt == "dense" else "Dense Model Sparse Indexing (COO)"}.get(
            model, f"{model} ({sparsity:.0%} sparse), {fmt}")
        row = {}
        for _, r in part.iterrows():
            network = STORED_NETWORKS[r["network"]]
            theirs = paper.get((model, fmt), {}).get(r["network"])
            ratio = r["x smaller than dense"]
            row[(network, "ours MB")] = f"{r['MB']:.5g}"
            row[(network, "paper MB")] = "" if theirs is None else f"{theirs:.5g}"
            row[(network, "vs dense")] = f"{ratio:.2f}x smaller" if ratio > 1.005 else (
                f"{1 / ratio:.2f}x larger" if ratio < 0.995 else "same")
        row[("check", "outputs identical")] = "✓" if part["identical"].all() else "✗"
        out[label] = row
    table = pd.DataFrame(out).T
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def storage_curve(make_agent: Callable[[], BCQNetworks], data: Any, sparsities: Sequence[float], formats: Sequence[str],
                  seed: int) -> pd.DataFrame:
    """Fig. 4 of Arnob et al.: the stored size (MB) of each network along ``sparsities``, with SNIP masks.

    One SNIP score per network of ``make_agent()`` (its own loss, one batch of ``PRUNING_BATCH["snip"]``
    transitions drawn with a generator seeded ``seed``), one global top-k per network and sparsity.
    """
    agent = make_agent()
    batch = data.sample(PRUNING_BATCH["snip"], torch.Generator().manual_seed(seed))
    scores = {name: pruning.SCORERS["snip"](module, loss_fn, batch)
              for name, (module, loss_fn) in pruning_losses(agent, seed=seed).items()}
    rows = []
    for sparsity in sparsities:
        masks = {name: pruning.keep_top(s, 1 - sparsity) for name, s in scores.items()}
        for name, module in stored_networks(make_agent, masks).items():
            weights = pruning.pruned_state_dict(module)
            rows += [dict(sparsity=sparsity, network=name, format=fmt,
                          MB=len(pruning.encode_weights(weights, fmt)) / 1e6) for fmt in formats]
    return pd.DataFrame(rows)


@torch.no_grad()
def actor_timing(dense: nn.Module, masked: nn.Module, batches: Sequence[int], repeats: int,
                 rounds: int = 3) -> pd.DataFrame:
    """CPU time of the ``dense`` actor against the ``masked`` one held as ``torch.sparse_csr`` matrices
    (``helpers.pruning.sparse_inference_copy``, checked first to give the masked actor's outputs), per batch size:
    the best of ``rounds`` medians (``helpers.metrics.median_seconds``), both timed alternately so that they see
    the same load. Inputs are random states and actions (global torch RNG)."""
    checks.integer("repeats", repeats, low=1)
    dense, masked = dense.eval(), masked.eval()
    sparse = pruning.sparse_inference_copy(masked)
    state_dim, action_dim = dense.l1.in_features - dense.l3.out_features, dense.l3.out_features
    rows = []
    for bs in batches:
        s, a = torch.randn(bs, state_dim), torch.randn(bs, action_dim).clamp(-1, 1)
        torch.testing.assert_close(sparse(s, a), masked(s, a), rtol=1e-5, atol=1e-6)
        t_dense, t_sparse = [], []
        for _ in range(rounds):
            t_dense.append(median_seconds(lambda: dense(s, a), repeats))
            t_sparse.append(median_seconds(lambda: sparse(s, a), repeats))
        rows.append({"batch": bs, "dense (µs)": 1e6 * min(t_dense), "sparse CSR (µs)": 1e6 * min(t_sparse),
                     "speed-up": min(t_dense) / min(t_sparse)})
    return pd.DataFrame(rows).set_index("batch")


def last_layer_by_criterion(data: Any, seeds: Sequence[int], density: float) -> pd.DataFrame:
    """The share of each network's last layer kept at ``density`` by SNIP, GraSP (the official sign, Eq. 4, and
    ``|θ ⊙ Hg|``) and magnitude, mean over ``seeds`` (BCQ agents; per seed the SNIP batch, then the GraSP batch)."""
    rows = []
    for seed in seeds:
        agent = seeded_agent(data, seed)
        g = torch.Generator().manual_seed(seed)
        batches = {method: data.sample(PRUNING_BATCH[method], g) for method in ("snip", "grasp")}
        for name, (module, loss_fn) in pruning_losses(agent).items():
            grasp = pruning.SCORERS["grasp"](module, loss_fn, batches["grasp"])
            criteria = {"SNIP |g θ|": pruning.SCORERS["snip"](module, loss_fn, batches["snip"]),
                        "GraSP θ Hg (official sign)": grasp, "GraSP |θ Hg|": {k: v.abs() for k, v in grasp.items()},
                        "magnitude |θ|": pruning.SCORERS["magnitude"](module)}
            heads = ["mean.weight", "log_std.weight"] if name == "vae_encoder" else [list(grasp)[-1]]
            for criterion, scores in criteria.items():
                masks = pruning.keep_top(scores, density)
                rows.append(dict(network=name, criterion=criterion, seed=seed,
                                 last=sum(int(masks[h].sum()) for h in heads) / sum(masks[h].numel() for h in heads)))
    table = pd.DataFrame(rows).pivot_table(index="network", columns="criterion", values="last", aggfunc="mean")
    return table[["SNIP |g θ|", "GraSP θ Hg (official sign)", "GraSP |θ Hg|", "magnitude |θ|"]]
