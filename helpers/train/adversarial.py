"""Adversarial-training recipes of Paper 1 (Huang et al. 2020), each a load-or-train cache keyed by its own settings.

* :func:`train_capacity_cnn`: one capacity-scale CNN of Sec. III (Table I) trained with FGSM or PGD adversarial
  training, the 50/50 objective ``adv_weight * L(x_adv) + (1 - adv_weight) * L(x)`` (Goodfellow et al. 2015, Eq. 6),
  or with standard training (the baseline of the paper's "requires more capacity than standard training");
* :func:`train_binary_feature_cnn`: the binary feature model of Sec. IV, standard or PGD-trained;
* :func:`lottery_runs`: the lottery tickets of Sec. V, {rewind, random re-initialisation} x {standard, FGSM
  adversarial training}, every round checkpointed (:func:`helpers.pruning.lottery_ticket`); :func:`lottery_unit` runs
  one chain of it (one seed, one training, both resets) as a ``helpers.units`` unit (:func:`lottery_units` lists them).

Each recipe builds its checkpoint key from its own arguments (:func:`capacity_settings`, ...), with the keys of the
book's first checkpoints, so models cached by earlier builds still load. :func:`accuracy_row`, :func:`lottery_curve`
and :func:`lottery_table` turn the trained models and the lottery records into the notebooks' tables;
:func:`capacity_unit` trains and evaluates one capacity model of Sec. III (a ``helpers.units`` unit;
:func:`capacity_units` lists them, :func:`capacity_runs` runs them in this process on loaded data), and :func:`capacity_param_table`,
:func:`capacity_accuracies` and :func:`capacity_side_by_side` give Tables I-III.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import checks, device, limit_cpu_threads, seed_everything
from ..attacks import Attack, pgd_attack
from ..data import load_quietly
from ..models import CAPACITY_SCALES, MLP, BinaryFeatureCNN, capacity_cnn, count_parameters
from ..io import atomic_torch_save, load_checkpoint
from ..pruning import (RESETS, SCOPES, current_masks, density_text, layer_density, lottery_ticket,
                       reinitialised_tickets)
from .loop import OPTIMIZERS, checkpoint_path, evaluate, fit

__all__ = ["CAPACITY_METHODS", "CAPACITY_TRAININGS", "CAPACITY_ATTACKS", "capacity_attack", "capacity_settings", "train_capacity_cnn", "capacity_param_table",
           "capacity_model_row", "capacity_runs", "capacity_units", "capacity_unit",
           "capacity_seed_runs", "capacity_scores", "capacity_accuracies", "capacity_side_by_side", "capacity_attack_table",
           "binary_feature_settings", "train_binary_feature_cnn", "accuracy_row", "LOTTERY_ARCH", "TRAININGS",
           "TRAINING_LABELS", "RESET_LABELS", "MASK_REINIT", "LOTTERY_RESETS", "lottery_settings", "lottery_chain", "lottery_runs", "lottery_seed_runs",
           "lottery_units", "lottery_unit", "lottery_curve",
           "lottery_scores", "lottery_table"]

#: Adversarial training methods of Sec. III: the attack that makes x_adv, and the label of its tables.
CAPACITY_METHODS = {"fgsm": "FGSM-AT", "pgd": "PGD-AT"}
#: Every training of the capacity study: standard training (no x_adv; the paper's Sec. VI baseline) and the two
#: adversarial trainings. The key is the ``method`` of a capacity row.
CAPACITY_TRAININGS = {"standard": "standard", **CAPACITY_METHODS}
#: The attacks every capacity model is evaluated under (row columns ``fgsm`` and ``pgd``, with ``*_correct``).
CAPACITY_ATTACKS = ("fgsm", "pgd")
#: Penultimate features of the binary model of Sec. IV ("100 features").
N_FEATURES = 100


def capacity_attack(method: str, eps: float, steps: int, step_fraction: float) -> Attack:
    """The attack of one capacity run, for training or evaluation: FGSM (Goodfellow et al., Eq. 6) or PGD of
    ``steps`` steps of ``step_fraction * eps`` (Madry et al., Eq. 2; the step rounded to 6 decimals)."""
    checks.choice("method", method, tuple(CAPACITY_METHODS))
    if method == "fgsm":
        return Attack("fgsm", eps=checks.number("eps", eps, 0, 1))
    return pgd_attack(eps, steps, step_fraction, decimals=6)


def capacity_settings(data, *, attack: Attack | None, epochs: int, optimizer: str, lr: float, momentum: float,
                      batch_size: int, adv_weight: float, seed: int) -> dict[str, Any]:
    """What decides a capacity model's weights, as its checkpoint key: the data used (name, size, subset seed:
    ``seed``), the optimisation and the training attack (Paper 1, Sec. III); ``attack=None``: standard training
    (then ``adv_weight`` plays no part and is left out of the key)."""
    if attack is None:
        return dict(dataset=data.name, train_n=len(data), subset_seed=seed, epochs=epochs, optimizer=optimizer, lr=lr,
                    momentum=momentum, batch_size=batch_size, attack=None, seed=seed)
    return dict(dataset=data.name, train_n=len(data), subset_seed=seed, epochs=epochs, optimizer=optimizer, lr=lr,
                momentum=momentum, batch_size=batch_size, attack=attack.as_dict(), adv_weight=adv_weight, seed=seed)


def train_capacity_cnn(scale: int, data, attack: Attack | None, *, epochs: int, optimizer: str, lr: float, momentum: float,
                       batch_size: int, adv_weight: float, seed: int, device: torch.device | str,
                       progress: bool = True) -> tuple[nn.Module, list[dict]]:
    """Load or adversarially train the capacity-``scale`` CNN of Paper 1 (Table I) against ``attack`` (Sec. III).

    ``attack`` (from :func:`capacity_attack`) makes x_adv, and its kind names the method; training minimises
    Eq. 6 of Goodfellow et al. with ``adv_weight``. ``attack=None``: standard training (clean loss only). The weights start from ``seed`` (the same initial weights for
    both methods at one scale); ``data`` is the training subset drawn with ``seed``. Returns the model (eval mode)
    and :func:`~helpers.train.fit`'s history (a cached model keeps the history, so the times, of the run that
    trained it).
    """
    if attack is not None and (not isinstance(attack, Attack) or attack.kind not in CAPACITY_METHODS):
        raise ValueError(f"attack must be None (standard training) or an Attack of kind {', '.join(CAPACITY_METHODS)}; "
                         f"got {attack!r}")
    method = "standard" if attack is None else attack.kind
    checks.integer("epochs", epochs, low=1)
    checks.choice("optimizer", optimizer, OPTIMIZERS)
    checks.number("adv_weight", adv_weight, 0, 1)
    seed_everything(seed)
    model = capacity_cnn(scale, num_classes=data.num_classes).to(device)
    settings = capacity_settings(data, attack=attack, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum,
                                 batch_size=batch_size, adv_weight=adv_weight, seed=seed)
    history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                  attack=attack, adv_weight=adv_weight, seed=seed, progress=progress,
                  desc=f"{CAPACITY_TRAININGS[method]} scale {scale}" + (f" eps {attack.eps:g}" if attack else ""),
                  checkpoint=checkpoint_path(f"capacity-{method}-scale{scale}", **settings))
    return model, history


def capacity_param_table(num_classes: int) -> pd.DataFrame:
    """Table I of Paper 1: each capacity scale's filters and neurons, the paper's parameter count and ours (counted on
    the meta device, shapes only), their ratio and the paper's count at the next scale; indexed by capacity scale."""
    rows = []
    for s, (c1, c2, fc, paper_count) in CAPACITY_SCALES.items():
        with torch.device("meta"):  # shapes only: counting 20 M parameters needs no memory or initialisation
            ours = count_parameters(capacity_cnn(s, num_classes=num_classes))
        rows.append({"capacity scale": s, "conv1 filters": c1, "conv2 filters": c2, "FC neurons": fc,
                     "paper's count": paper_count, "our count": ours, "ours / paper": ours / paper_count,
                     "paper's count at scale s+1": CAPACITY_SCALES.get(s + 1, (0, 0, 0, None))[3]})
    return pd.DataFrame(rows).set_index("capacity scale")


def capacity_model_row(train, test, method: str, eps: float, scale: int, *, train_steps: int,
                       train_step_fraction: float, eval_steps: int, eval_step_fraction: float, epochs: int,
                       optimizer: str, lr: float, momentum: float, batch_size: int, adv_weight: float, seed: int,
                       device: str | torch.device = "cpu") -> dict[str, Any]:
    """One model of Sec. III of Paper 1: train the capacity-``scale`` CNN with ``method`` of
    :data:`CAPACITY_TRAININGS` at ``eps`` (:func:`train_capacity_cnn`; ``standard`` ignores ``eps`` in training),
    evaluate its clean accuracy and its accuracy under FGSM and PGD (``eval_steps`` steps) at ``eps``, print one line.
    Returns its row: seed, eps, method, scale, clean, fgsm, pgd, adversarial (under the attack it was trained with;
    PGD for standard training, the stronger attack), n_test, ``clean_correct``, ``fgsm_correct``, ``pgd_correct``,
    ``adversarial_correct`` (1/0 per test image, in the test set's order), train/eval attack, train s."""
    checks.choice("method", method, tuple(CAPACITY_TRAININGS))
    train_attack = None if method == "standard" else capacity_attack(method, eps, train_steps, train_step_fraction)
    attacks = {kind: capacity_attack(kind, eps, eval_steps, eval_step_fraction) for kind in CAPACITY_ATTACKS}
    own = "pgd" if method == "standard" else method
    model, history = train_capacity_cnn(
        scale, train, train_attack, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum,
        batch_size=batch_size, adv_weight=adv_weight, seed=seed, device=device)
    row = {"seed": seed, "eps": eps, "method": method, "scale": scale}
    for kind, attack in attacks.items():
        scores = evaluate(model, test, attack=attack, seed=seed, progress=True,
                          desc=f"{attack.describe()} on scale {scale}", per_example=True)
        row.update({"clean": scores["clean"], "clean_correct": scores["clean_correct"], kind: scores["robust"],
                    f"{kind}_correct": scores["robust_correct"], "n_test": scores["n"]})
    row.update({f"{kind} attack": attack.describe() for kind, attack in attacks.items()})
    row.update({"adversarial": row[own], "adversarial_correct": row[f"{own}_correct"],
                "train attack": train_attack.describe() if train_attack else "none (standard training)",
                "eval attack": attacks[own].describe(), "train s": sum(h["seconds"] for h in history)})
    print(f"seed {seed} {CAPACITY_TRAININGS[method]:8s} eps {eps:g} scale {scale}: clean {row['clean']:.1%}, "
          + ", ".join(f"{attacks[k].describe()} {row[k]:.1%}" for k in CAPACITY_ATTACKS)
          + f" ({row['train s']:.0f} s training)")
    return row


def capacity_runs(train, test, epsilons: Sequence[float], capacities: Sequence[int], *, seed: int,
                  trainings: Sequence[str] | None = None, **settings) -> pd.DataFrame:
    """Sec. III of Paper 1: :func:`capacity_model_row` for each eps, training of ``trainings`` (default: every one of
    :data:`CAPACITY_TRAININGS`) and capacity scale, in this process, one row per model. ``settings``: the keyword
    arguments of :func:`capacity_model_row`."""
    trainings = _trainings(trainings)
    return pd.DataFrame([capacity_model_row(train, test, method, eps, s, seed=seed, **settings)
                         for eps in epsilons for method in trainings for s in capacities])


def _trainings(trainings: Sequence[str] | None) -> list[str]:
    chosen = list(CAPACITY_TRAININGS) if trainings is None else list(trainings)
    for t in chosen:
        checks.choice("trainings", t, tuple(CAPACITY_TRAININGS))
    return chosen


def capacity_units(dataset: str, epsilons: Sequence[float], capacities: Sequence[int], seeds: Sequence[int], *,
                   train_n: int | None, eval_n: int | None, subset_seed: int, trainings: Sequence[str] | None = None,
                   **settings) -> list[dict[str, Any]]:
    """The units of Sec. III of Paper 1 (:func:`capacity_unit`): one per (seed, eps, training of ``trainings``
    (default: all of :data:`CAPACITY_TRAININGS`), capacity scale), in that order, as plain settings; a standard model
    is trained once per seed and scale (its checkpoint does not depend on eps) and evaluated at each eps. The data is ``dataset``'s first ``train_n`` / ``eval_n`` images of a shuffle seeded
    with ``subset_seed`` (those of :meth:`helpers.results.Run.datasets` with the run's seed); ``settings``: the
    training and attack keywords of :func:`capacity_model_row` (``train_steps``, ..., ``adv_weight``)."""
    checks.text("dataset", dataset)
    trainings = _trainings(trainings)
    return [dict(dataset=dataset, train_n=train_n, eval_n=eval_n, subset_seed=subset_seed, seed=s, eps=float(eps),
                 method=method, scale=scale, **settings)
            for s in checks.seeds(seeds) for eps in epsilons for method in trainings for scale in capacities]


def capacity_unit(settings: dict[str, Any]) -> dict[str, Any]:
    """One unit of Sec. III of Paper 1 (a ``helpers.units`` unit): load the data ``settings`` name, then
    :func:`capacity_model_row` on the best device with ``settings["threads"]`` CPU threads (default 1: one Ray
    worker per CPU; 2 for the book run, whose units run one after the other on a 2-core machine). The model is
    checkpointed after every epoch under the work root and resumes from there; the row's per-image scores are lists
    (picklable, JSON-able)."""
    settings = dict(settings)
    name, train_n, eval_n = settings.pop("dataset"), settings.pop("train_n"), settings.pop("eval_n")
    subset_seed = settings.pop("subset_seed")
    method, eps, scale = settings.pop("method"), settings.pop("eps"), settings.pop("scale")
    dev = device()
    limit_cpu_threads(dev, checks.integer("threads", settings.pop("threads", 1), low=1))
    train, test = (load_quietly(name, split).subset(n, seed=subset_seed)
                   for split, n in (("train", train_n), ("test", eval_n)))
    row = capacity_model_row(train, test, method, eps, scale, device=dev, **settings)
    return {k: v.tolist() if k.endswith("_correct") else v for k, v in row.items()}


def capacity_accuracies(measured: pd.DataFrame, method: str, kind: str, eps: float) -> list:
    """One accuracy column (``kind``: clean, adversarial, fgsm or pgd) of :func:`capacity_runs` for ``method`` at
    ``eps``, one entry per capacity scale of Table I (None where that scale was not run)."""
    found = measured[(measured["method"] == method) & (measured["eps"] == eps)].groupby("scale")[kind].mean()
    return [float(found[s]) if s in found.index else None for s in CAPACITY_SCALES]


def capacity_seed_runs(train, test, epsilons: Sequence[float], capacities: Sequence[int], seeds: Sequence[int],
                       **settings) -> pd.DataFrame:
    """:func:`capacity_runs` once per seed of ``seeds`` (each seed its own initial weights, batch order and attack
    noise; the same training and test images), the rows of every seed in one frame. ``settings``: the keyword
    arguments of :func:`capacity_runs` but ``seed``. The one loop over seeds of the capacity notebook."""
    seeds = checks.seeds(seeds)
    return pd.concat([capacity_runs(train, test, epsilons, capacities, seed=s, **settings) for s in seeds],
                     ignore_index=True)


def capacity_scores(measured: pd.DataFrame, method: str, kind: str, eps: float, scale: int):
    """The per-example scores ``[seeds, test images]`` (1/0) of one capacity model of :func:`capacity_seed_runs`:
    ``kind`` clean, adversarial, fgsm or pgd, seeds in increasing order (for :func:`helpers.claims.bootstrap`)."""
    checks.choice("kind", kind, ("clean", "adversarial", *CAPACITY_ATTACKS))
    rows = measured[(measured["method"] == method) & (measured["eps"] == eps) & (measured["scale"] == scale)]
    if rows.empty:
        raise ValueError(f"no {method} model at scale {scale}, eps {eps:g} in the measurements")
    rows = rows.sort_values("seed")
    return np.stack([np.asarray(v, dtype=float) for v in rows[f"{kind}_correct"]])


def capacity_side_by_side(measured: pd.DataFrame, paper: Mapping[str, Mapping[str, Sequence[float]]], method: str,
                          eps: float) -> pd.DataFrame:
    """Tables II/III of Paper 1: our clean and adversarial accuracy beside the paper's for ``method``, one column per
    capacity scale, as percent strings (empty where not measured)."""
    table = {}
    for kind in ("clean", "adversarial"):
        table[f"{kind} (ours)"] = capacity_accuracies(measured, method, kind, eps)
        table[f"{kind} (paper)"] = paper[method][kind]
    frame = pd.DataFrame(table, index=pd.Index(list(CAPACITY_SCALES), name="capacity scale")).T
    return frame.map(lambda v: "" if v is None or pd.isna(v) else f"{v:.1%}")


def capacity_attack_table(measured: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Every capacity model at ``eps`` under every evaluation: one row per (training of :data:`CAPACITY_TRAININGS`,
    clean / FGSM / PGD accuracy), one column per capacity scale run, the mean over seeds as percent strings. The
    standard baseline and the FGSM-trained nets under PGD, beside Tables II-III."""
    chosen = measured[measured["eps"] == eps]
    if chosen.empty:
        raise ValueError(f"no capacity model at eps {eps:g} in the measurements")
    rows = {}
    for method, label in CAPACITY_TRAININGS.items():
        of_method = chosen[chosen["method"] == method]
        if not of_method.empty:
            rows[(label, "clean")] = of_method.groupby("scale")["clean"].mean()
            for kind in CAPACITY_ATTACKS:
                rows[(label, of_method[f"{kind} attack"].iloc[0])] = of_method.groupby("scale")[kind].mean()
    table = pd.DataFrame(rows).T
    table.index.names = ["training", "accuracy on"]
    table.columns.name = "capacity scale"
    return table.map(lambda v: "" if pd.isna(v) else f"{v:.1%}")


def binary_feature_settings(data, *, epochs: int, lr: float, batch_size: int, optimizer: str, seed: int,
                            attack: Attack | None, adv_weight: float) -> dict[str, Any]:
    """What decides the weights of a binary feature model (Paper 1, Sec. IV), as its checkpoint key."""
    return dict(dataset=data.name, n=len(data), epochs=epochs, lr=lr, batch=batch_size, optimizer=optimizer,
                seed=seed, attack=attack.as_dict() if attack else None, adv_weight=adv_weight)


def train_binary_feature_cnn(tag: str, data, *, epochs: int, lr: float, batch_size: int, optimizer: str,
                             seed: int, device: torch.device | str, attack: Attack | None = None,
                             adv_weight: float = 0.5, progress: bool = True) -> BinaryFeatureCNN:
    """Load or train the binary ``BinaryFeatureCNN`` of Paper 1, Sec. IV (100 features, one logit), standard or,
    with ``attack``, adversarially (Goodfellow et al., Eq. 6 with ``adv_weight``); ``tag`` names its cache entry."""
    checks.text("tag", tag)
    checks.integer("epochs", epochs, low=1)
    torch.manual_seed(seed)
    model = BinaryFeatureCNN(n_features=N_FEATURES).to(device)
    settings = binary_feature_settings(data, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                                       seed=seed, attack=attack, adv_weight=adv_weight)
    fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, attack=attack,
        adv_weight=adv_weight, seed=seed, checkpoint=checkpoint_path(f"ch1-feature-usefulness-{tag}", **settings),
        progress=progress, desc=tag)
    return model.eval()


def accuracy_row(model: nn.Module, clean_data, robust_data, attacks: Mapping[str, Attack], *, seed: int,
                 progress: bool = True) -> dict[str, float]:
    """One row of an accuracy table: clean accuracy on ``clean_data``, then robust accuracy on ``robust_data`` under
    each attack of ``attacks`` (label -> Attack), the attack's noise drawn from ``seed``."""
    for label, attack in attacks.items():
        if not isinstance(attack, Attack):
            raise ValueError(f"attacks[{label!r}] must be an Attack, got {attack!r}")
    row = {"clean": evaluate(model, clean_data)["clean"]}
    for label, attack in attacks.items():
        row[label] = evaluate(model, robust_data, attack, seed=seed, progress=progress)["robust"]
    return row


#: The fully connected network of Sec. V-A, read literally: "a 3-layers fully connected network (300, 100, 100)".
LOTTERY_ARCH = (784, (300, 100, 100))
#: Training per lottery round: standard, or FGSM adversarial training.
TRAININGS = ("standard", "fgsm_at")
TRAINING_LABELS = {"standard": "standard training", "fgsm_at": "FGSM adversarial training"}
#: Frankle & Carbin's own control, beside the two resets of :func:`helpers.pruning.lottery_ticket`: the ticket's mask
#: with fresh random weights (:func:`helpers.pruning.reinitialised_tickets`).
MASK_REINIT = "mask_reinit"
LOTTERY_RESETS = (*RESETS, MASK_REINIT)
RESET_LABELS = {"rewind": "lottery ticket (rewind)", "random": "random re-initialisation",
                MASK_REINIT: "ticket's mask, re-initialised"}


def lottery_settings(train, test, pgd_test, *, rounds: int, amount: float, epochs: int, lr: float, batch_size: int,
                     adv_weight: float, fgsm: Attack, pgd: Attack, seed: int, scope: str = "layer") -> dict[str, Any]:
    """What decides the four lottery runs of Paper 1, Sec. V (data sizes, schedule, pruning scope, training,
    attacks), as the key of their checkpoint folder; ``pgd_test`` may be ``None`` (no PGD check)."""
    return dict(dataset=train.name, train_n=len(train), test_n=len(test), pgd_n=len(pgd_test) if pgd_test is not None else 0,
                seed=seed, rounds=rounds, amount=amount, epochs=epochs, lr=lr, batch_size=batch_size,
                adv_weight=adv_weight, fgsm=fgsm.as_dict(), pgd=pgd.as_dict(), scope=scope,
                arch="784-300-100-100-10", scores="per-example")  # records keep 1/0 per test image


def _check_lottery_arguments(rounds: int, epochs: int, fgsm: Attack, pgd: Attack) -> None:
    checks.integer("rounds", rounds, low=1)
    checks.integer("epochs", epochs, low=1)
    for name, attack, kind in (("fgsm", fgsm, "fgsm"), ("pgd", pgd, "pgd")):
        if not isinstance(attack, Attack) or attack.kind != kind:
            raise ValueError(f"{name} must be an Attack of kind {kind!r}; got {attack!r}")


def lottery_chain(train, test, pgd_test, training: str, *, fgsm: Attack, pgd: Attack, rounds: int, amount: float,
                  epochs: int, lr: float, batch_size: int, adv_weight: float, seed: int, device: torch.device | str,
                  progress: bool = True, scope: str = "layer", control: bool = False) -> list[dict]:
    """Paper 1, Sec. V, for one ``training`` of :data:`TRAININGS`: iterative magnitude pruning (Frankle & Carbin,
    Alg. 1; ``scope`` "layer" or "global", see :func:`helpers.pruning.lottery_ticket`) of ``MLP(784, (300, 100,
    100))`` with each reset of :data:`helpers.pruning.RESETS` in turn, from theta_0 drawn with ``seed`` (the same for
    both trainings); with ``control``, then Frankle & Carbin's control (:data:`MASK_REINIT`): every rewound ticket's
    mask (saved by the rewind run, one file per round) with fresh random weights, trained the same way; its round 0
    is the dense net itself.

    Each round trains ``epochs`` epochs (Adam, a fresh optimiser per round; the dense round 0 is trained once, saved
    as ``dense-{training}.pt``, and loaded by the second reset: so both resets of one training belong in one process
    at a time), prunes ``amount`` of the hidden weights (the output layer half of it) and measures clean and ``fgsm``
    accuracy on ``test``, and for FGSM-AT ``pgd`` accuracy on ``pgd_test`` (when given). Every round is checkpointed
    in the folder keyed by :func:`lottery_settings`, so a chain resumes after its last finished round. Returns one
    record per round, the rewind rounds first: ``seed, training, scope, reset, round, density, clean, fgsm,
    train_loss, train_s, clean_correct, fgsm_correct`` (1/0 per test image, bool tensors) (and ``pgd``)."""
    _check_lottery_arguments(rounds, epochs, fgsm, pgd)
    checks.choice("training", training, TRAININGS)
    checks.choice("scope", scope, SCOPES)
    settings = lottery_settings(train, test, pgd_test, rounds=rounds, amount=amount, epochs=epochs, lr=lr,
                                batch_size=batch_size, adv_weight=adv_weight, fgsm=fgsm, pgd=pgd, seed=seed,
                                scope=scope)
    run_dir = checkpoint_path("lottery_tickets", **settings).with_suffix("")  # a folder keyed by the settings
    torch.manual_seed(seed)
    theta_0 = MLP(LOTTERY_ARCH[0], LOTTERY_ARCH[1], train.num_classes).state_dict()  # one initialisation for all four
    attack = fgsm if training == "fgsm_at" else None

    def train_fn(model: nn.Module, round_index: int) -> dict:
        shared_dense = run_dir / f"dense-{training}.pt" if round_index == 0 else None
        history = fit(model, train, epochs=epochs, lr=lr, batch_size=batch_size, optimizer="adam", attack=attack,
                      adv_weight=adv_weight, seed=seed * 1000 + round_index, checkpoint=shared_dense,
                      progress=False)  # the rounds bar of lottery_ticket shows progress: no bar per round
        scores = evaluate(model, test, attack=fgsm, batch_size=1000, per_example=True)
        metrics = {"clean": scores["clean"], "fgsm": scores["robust"], "train_loss": history[-1]["loss"],
                   "layer_densities": {name: kept / total for name, (kept, total) in layer_density(model).items()},
                   "train_s": sum(h["seconds"] for h in history),
                   # 1/0 per test image (bool tensors: the round's checkpoint loads with weights_only=True)
                   "clean_correct": torch.as_tensor(scores["clean_correct"]).bool(),
                   "fgsm_correct": torch.as_tensor(scores["robust_correct"]).bool()}
        if attack is not None and pgd_test is not None:  # PGD-40 on the adversarially trained tickets
            metrics["pgd"] = evaluate(model, pgd_test, attack=pgd, batch_size=1000, seed=seed)["robust"]
        return metrics

    def mask_path(round_index: int) -> Path:
        return run_dir / f"{training}-rewind" / f"mask-{round_index}.pt"

    def rewind_train_fn(model: nn.Module, round_index: int) -> dict:
        if not mask_path(round_index).exists():  # the ticket's mask of every round, for the control (now or later)
            atomic_torch_save({k: v.bool().cpu() for k, v in current_masks(model).items()}, mask_path(round_index))
        return train_fn(model, round_index)

    def fresh_model() -> nn.Module:
        model = MLP(LOTTERY_ARCH[0], LOTTERY_ARCH[1], train.num_classes)
        model.load_state_dict(theta_0)
        return model.to(device)

    records = []
    for reset in RESETS:
        print(f"seed {seed}: {TRAINING_LABELS[training]}, {RESET_LABELS[reset]} ({scope} pruning)")
        rounds_done = lottery_ticket(fresh_model(), rewind_train_fn if reset == "rewind" else train_fn, rounds=rounds,
                                     amount=amount, reset=reset, output_amount=amount / 2, seed=seed, scope=scope,
                                     checkpoint_dir=run_dir / f"{training}-{reset}", progress=progress)
        records += [{"seed": seed, "training": training, "scope": scope, "reset": reset, **r} for r in rounds_done]
    if control:
        missing = [r for r in range(rounds) if not mask_path(r).exists()]
        if missing:
            raise FileNotFoundError(
                f"the rewind run in {run_dir / f'{training}-rewind'} was checkpointed without the masks of rounds "
                f"{missing} (a cache written before they were saved); delete that folder to retrain it with them")
        print(f"seed {seed}: {TRAINING_LABELS[training]}, {RESET_LABELS[MASK_REINIT]} ({scope} pruning)")
        dense = {k: v for k, v in records[0].items() if k not in ("seed", "training", "scope", "reset", "round", "density")}
        rounds_done = reinitialised_tickets(
            fresh_model(), lambda r: load_checkpoint(mask_path(r)),
            lambda model, r: dict(dense) if r == 0 else train_fn(model, r),  # round 0: the dense net itself
            rounds=rounds, seed=seed, checkpoint_dir=run_dir / f"{training}-{MASK_REINIT}", progress=progress)
        records += [{"seed": seed, "training": training, "scope": scope, "reset": MASK_REINIT, **r} for r in rounds_done]
    return records


def lottery_runs(train, test, pgd_test, *, fgsm: Attack, pgd: Attack, rounds: int, amount: float, epochs: int,
                 lr: float, batch_size: int, adv_weight: float, seed: int, device: torch.device | str,
                 progress: bool = True, scope: str = "layer", control: bool = False) -> list[dict]:
    """Paper 1, Sec. V: the four lottery runs of one seed, {rewind, random re-initialisation} x {standard, FGSM
    adversarial training (Goodfellow et al., Eq. 6 with ``adv_weight``)}, in this process: :func:`lottery_chain`
    for each training of :data:`TRAININGS`, all four from one theta_0 drawn with ``seed``, their records in that
    order (training, then reset, then round)."""
    _check_lottery_arguments(rounds, epochs, fgsm, pgd)
    return [record for training in TRAININGS for record in lottery_chain(
        train, test, pgd_test, training, fgsm=fgsm, pgd=pgd, rounds=rounds, amount=amount, epochs=epochs, lr=lr,
        batch_size=batch_size, adv_weight=adv_weight, seed=seed, device=device, progress=progress, scope=scope,
        control=control)]


def lottery_seed_runs(train, test, pgd_test, *, seeds: Sequence[int], **settings) -> list[dict]:
    """:func:`lottery_runs` once per seed of ``seeds`` (each seed its own theta_0, batch order and re-initialisations;
    the same training and test images), all records in one list, in this process. ``settings``: the keyword
    arguments of :func:`lottery_runs` but ``seed``. The notebook maps :func:`lottery_unit` instead (same records)."""
    seeds = checks.seeds(seeds)
    return [record for s in seeds for record in lottery_runs(train, test, pgd_test, seed=s, **settings)]


def lottery_units(dataset: str, seeds: Sequence[int], *, train_n: int | None, test_n: int | None, pgd_n: int | None,
                  subset_seed: int, fgsm: Attack, pgd: Attack, rounds: int, amount: float, epochs: int, lr: float,
                  batch_size: int, adv_weight: float, scopes: Sequence[str] = ("layer",),
                  control: bool = True) -> list[dict[str, Any]]:
    """The units of Sec. V of Paper 1 (:func:`lottery_unit`): one per (seed, pruning scope of ``scopes``, training
    of :data:`TRAININGS`), in that order, as plain settings; each is a chain of rounds for both resets, and with
    ``control`` for the first scope also Frankle & Carbin's control (:data:`MASK_REINIT`). The data is ``dataset``'s first ``train_n``
    / ``test_n`` images of a shuffle seeded with ``subset_seed`` (those of :meth:`helpers.results.Run.datasets` with
    the run's seed; ``None`` or 0: all), and the PGD images ``pgd_n`` of the test images drawn with ``subset_seed +
    1`` (0 or ``None``: no PGD check)."""
    checks.text("dataset", dataset)
    _check_lottery_arguments(rounds, epochs, fgsm, pgd)
    scopes = list(scopes)
    if not scopes or len(set(scopes)) != len(scopes):
        raise ValueError(f"scopes must list distinct pruning scopes of {', '.join(SCOPES)}; got {scopes!r}")
    for scope in scopes:
        checks.choice("scopes", scope, SCOPES)
    return [dict(dataset=dataset, train_n=train_n, test_n=test_n, pgd_n=pgd_n, subset_seed=subset_seed, seed=s,
                 training=training, fgsm=fgsm.as_dict(), pgd=pgd.as_dict(), rounds=rounds, amount=amount,
                 epochs=epochs, lr=lr, batch_size=batch_size, adv_weight=adv_weight, scope=scope,
                 control=bool(control and scope == scopes[0]))
            for s in checks.seeds(seeds) for scope in scopes for training in TRAININGS]


def lottery_unit(settings: dict[str, Any]) -> list[dict]:
    """One unit of Sec. V of Paper 1 (a ``helpers.units`` unit): load the data ``settings`` name (as
    :func:`lottery_units` describes), then :func:`lottery_chain` for its seed and training on the best device with
    one CPU thread. Every round is checkpointed under the work root (the folder of :func:`lottery_runs`) and resumes
    from there; the records' per-image scores are lists of 1/0 (picklable, JSON-able)."""
    settings = dict(settings)
    name, subset_seed = settings.pop("dataset"), settings.pop("subset_seed")
    sizes = {split: settings.pop(f"{split}_n") for split in ("train", "test", "pgd")}
    training = settings.pop("training")
    fgsm, pgd = Attack(**settings.pop("fgsm")), Attack(**settings.pop("pgd"))
    dev = device()
    limit_cpu_threads(dev, 1)
    seed_everything(settings["seed"])  # and deterministic kernels, as the notebook's run sets them
    train, test = (load_quietly(name, split) for split in ("train", "test"))
    train, test = (data.subset(sizes[split], seed=subset_seed) if sizes[split] else data
                   for split, data in (("train", train), ("test", test)))
    pgd_test = test.subset(sizes["pgd"], seed=subset_seed + 1) if sizes["pgd"] else None
    records = lottery_chain(train, test, pgd_test, training, fgsm=fgsm, pgd=pgd, device=dev, **settings)
    return [{k: v.int().tolist() if torch.is_tensor(v) else v for k, v in record.items()} for record in records]


def _check_curves(curves: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(curves, pd.DataFrame) or not set(columns) <= set(curves.columns):
        raise ValueError(f"curves must be a DataFrame of lottery_runs records with the columns {', '.join(columns)}; "
                         f"got {list(curves.columns) if isinstance(curves, pd.DataFrame) else type(curves).__name__}")


def lottery_curve(curves: pd.DataFrame, training: str, reset: str) -> pd.DataFrame:
    """The rounds of one of the four runs of :func:`lottery_runs` (``curves``: its records as a DataFrame), in
    order of the round, densest first (Paper 1, Figs 9-12)."""
    _check_curves(curves, ("training", "reset", "round"))
    checks.choice("training", training, TRAININGS)
    checks.choice("reset", reset, LOTTERY_RESETS)
    chosen = curves[(curves["training"] == training) & (curves["reset"] == reset)]
    numeric = [c for c in chosen.columns if c not in ("seed", "training", "scope", "reset") and pd.api.types.is_numeric_dtype(chosen[c])]
    mean = chosen.groupby("round")[[c for c in numeric if c != "round"]].mean()  # the mean over seeds, if several
    return mean.reset_index().sort_values("round").reset_index(drop=True)


def lottery_scores(curves: pd.DataFrame, training: str, reset: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """One of the four runs of :func:`lottery_seed_runs` as per-example scores: the densities of its rounds and an
    array ``[rounds, seeds, test images]`` of 1/0 (``metric``: ``clean`` or ``fgsm``), seeds in increasing order."""
    _check_curves(curves, ("seed", "training", "reset", "round", "density", f"{metric}_correct"))
    checks.choice("metric", metric, ("clean", "fgsm"))
    checks.choice("reset", reset, LOTTERY_RESETS)
    chosen = curves[(curves["training"] == training) & (curves["reset"] == reset)].sort_values(["round", "seed"])
    rounds = sorted(chosen["round"].unique())
    seeds = sorted(chosen["seed"].unique())
    if len(chosen) != len(rounds) * len(seeds):
        raise ValueError(f"{training}/{reset}: every seed needs every round ({len(chosen)} records for "
                         f"{len(rounds)} rounds x {len(seeds)} seeds)")
    column = chosen[f"{metric}_correct"].map(lambda v: np.asarray(v, dtype=float))
    scores = np.stack(list(column)).reshape(len(rounds), len(seeds), -1)
    density = chosen.groupby("round")["density"].first().to_numpy()
    return density, scores


def lottery_table(curves: pd.DataFrame, metrics: Sequence[str], trainings: Sequence[str] = TRAININGS) -> pd.DataFrame:
    """The accuracies ``metrics`` of :func:`lottery_runs` records ``curves``: one row per pruning level (labelled by the
    weights remaining), one column per (training, reset, metric) in the order of ``trainings``, :data:`RESETS` and
    ``metrics``."""
    _check_curves(curves, ("training", "reset", "round", "density", *metrics))
    for training in trainings:
        checks.choice("trainings", training, TRAININGS)
    chosen = curves[curves["training"].isin(list(trainings))]
    wide = chosen.pivot_table(index=["round", "density"], columns=["training", "reset"], values=list(metrics))
    wide = wide.reorder_levels([1, 2, 0], axis=1)
    ran = set(chosen["reset"])
    wide = wide[[(t, r, m) for t in trainings for r in LOTTERY_RESETS if r in ran for m in metrics]]
    wide.index = [density_text(d) for _, d in wide.index]
    wide.index.name = "weights remaining"
    return wide
