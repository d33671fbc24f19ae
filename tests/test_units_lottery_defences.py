"""Chapter 1's lottery tickets and Chapter 5's defences as units (issue 15, item 2): the units give the records, weights
and histories of the notebooks' old in-process loops (same seeds, same order, same checkpoint files), a rerun loads
instead of training, and a local Ray instance (2 CPUs) gives the local executor's results for one unit of each."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from helpers import units
from helpers.attacks import Attack
from helpers.data import load_dataset
from helpers.models.defences import DEFENCES, pooled_defence_network
from helpers.train import adversarial
from helpers.train.defences import defence_unit, defence_units, load_trained_defence, train_defence
from test_units import data_root_with_images, local_ray, needs_ray  # noqa: F401 (local_ray: the Ray fixture)

FGSM, PGD = Attack("fgsm", eps=0.3), Attack("pgd", eps=0.3, alpha=0.01, steps=3)
#: The lottery notebook's settings, tiny: 2 rounds on 120 training and 100 test images, 16 PGD images.
LOTTERY = dict(rounds=2, amount=0.4, epochs=1, lr=1.2e-3, batch_size=60, adv_weight=0.5)
SIZES = dict(train_n=120, test_n=100, pgd_n=16)
#: The defences notebook's settings, tiny: 40 training and 100 validation images, 2 epochs, PD on 7x7 pooled images.
DEFENCE = dict(validation_n=100, train_n=40, epochs=2, patience=1, pd_pool=4)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "checkpoints").rglob("*") if p.is_file())


def plain(records: list[dict]) -> list[dict]:
    """Records without wall times, per-image scores as lists of 1/0."""
    return [{k: v.int().tolist() if torch.is_tensor(v) else v for k, v in r.items() if k != "train_s"} for r in records]


def lottery_old_loop(seeds: list[int], subset_seed: int) -> list[dict]:
    """The notebook's old cell: its data (run.datasets with the run's seed, PGD images with seed + 1), then
    lottery_seed_runs in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, test = (load_dataset("mnist", split).subset(SIZES[f"{split}_n"], seed=subset_seed)
                       for split in ("train", "test"))
    pgd_test = test.subset(SIZES["pgd_n"], seed=subset_seed + 1)
    return adversarial.lottery_seed_runs(train, test, pgd_test, seeds=seeds, fgsm=FGSM, pgd=PGD, device="cpu",
                                         progress=False, control=True, **LOTTERY)  # layer-wise, with the control


def lottery_units(seeds: list[int], subset_seed: int) -> list[dict]:
    return adversarial.lottery_units("mnist", seeds, subset_seed=subset_seed, fgsm=FGSM, pgd=PGD, **SIZES, **LOTTERY)


def test_lottery_units_give_the_old_loops_records_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "old")))
    old = lottery_old_loop([1, 2], subset_seed=1)
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "new")))
    chains = lottery_units([1, 2], subset_seed=1)
    assert [(u["seed"], u["training"]) for u in chains] == [(1, "standard"), (1, "fgsm_at"), (2, "standard"),
                                                            (2, "fgsm_at")]
    new = [r for chain in units.map_units(adversarial.lottery_unit, chains, executor="local", progress=False)
           for r in chain]
    assert plain(new) == plain(old)  # same seeds, same order, the same 1/0 per test image
    assert files(tmp_path / "new") == files(tmp_path / "old")  # the same folder (lottery_settings), the same files
    assert all(isinstance(r["clean_correct"], list) and "pgd" in r for r in new if r["training"] == "fgsm_at")
    calls = []
    monkeypatch.setattr(adversarial, "fit", lambda *a, **k: calls.append(1))  # a rerun loads every round
    again = units.map_units(adversarial.lottery_unit, chains[:1], executor="local", progress=False)[0]
    assert not calls and again == new[:len(again)]


def defence_old_loop(seeds: list[int], split_seed: int) -> dict:
    """The defences notebook's old cells 5 and 10: the validation split, then every network per seed and the seed's
    black-box source S' (S from seed + SEEDS), each built after torch.manual_seed(seed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full_train = load_dataset("mnist", "train")
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = order[:DEFENCE["validation_n"]], order[DEFENCE["validation_n"]:][:DEFENCE["train_n"]]
    validation, train = (full_train.x[val_idx], full_train.y[val_idx]), (full_train.x[train_idx], full_train.y[train_idx])
    out = {}
    for s in seeds:
        for name, seed, label in [*((n, s, n) for n in DEFENCES), ("S", s + len(seeds), "S′")]:
            torch.manual_seed(seed)
            net = pooled_defence_network(name, image_shape=full_train.x.shape[1:], pool=DEFENCE["pd_pool"])
            history = train_defence(net, name, train, validation, epochs=DEFENCE["epochs"],
                                    patience=DEFENCE["patience"], seed=seed, dataset=full_train.name,
                                    pd_pool=DEFENCE["pd_pool"])
            out[label, s] = (history, net.state_dict())
    return out


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_defence_units_give_the_old_loops_networks_and_histories(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "old")))
    old = defence_old_loop([3], split_seed=3)
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "new")))
    settings = defence_units("mnist", list(DEFENCES), [3], split_seed=3, **DEFENCE)
    assert [(u["network"], u["seed"], u["label"]) for u in settings] == [
        *((n, 3, n) for n in DEFENCES), ("S", 4, "S′")]
    trained = units.map_units(defence_unit, settings, executor="local", progress=False)
    assert [(t["label"], t["of_seed"]) for t in trained] == list(old)
    for t in trained:
        history, weights = old[t["label"], t["of_seed"]]
        assert without_seconds(t["history"]) == without_seconds(history), t["label"]
        net = load_trained_defence(t)  # what the notebook evaluates: the checkpoint's best epoch, weights_only
        assert not net.training and same_weights(net.state_dict(), weights), t["label"]
    assert files(tmp_path / "new") == files(tmp_path / "old")
    again = units.map_units(defence_unit, settings[:1], executor="local", progress=False)[0]
    assert again == trained[0]  # a rerun loads the checkpoint: the same history, times included


def test_unit_lists_refuse_unknown_names():
    with pytest.raises(ValueError, match="networks must be one of"):
        defence_units("mnist", ["S", "X"], [0], split_seed=0, **DEFENCE)
    with pytest.raises(ValueError, match="fgsm must be an Attack of kind 'fgsm'"):
        adversarial.lottery_units("mnist", [0], subset_seed=0, fgsm=PGD, pgd=PGD, **SIZES, **LOTTERY)
    assert len(defence_units("mnist", list(DEFENCES), [0, 1, 2, 3, 4], split_seed=0, **DEFENCE)) == 5 * 7
    assert [u["seed"] for u in defence_units("mnist", ["S"], [0, 1], split_seed=0, **DEFENCE)] == [0, 2, 1, 3]


@needs_ray
def test_ray_gives_the_local_results_for_a_lottery_and_a_defence_unit(local_ray, tmp_path, monkeypatch):
    chain = lottery_units([0], subset_seed=0)[1:]  # the FGSM-trained chain: both resets, PGD included
    network = [u for u in defence_units("mnist", ["RS"], [0], split_seed=0, **DEFENCE) if u["label"] == "RS"]
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "ray")))
    on_ray = units.map_units(adversarial.lottery_unit, chain, executor="ray", progress=False)
    net_on_ray = units.map_units(defence_unit, network, executor="ray", progress=False)
    written = files(tmp_path / "ray")
    assert any(f.startswith("checkpoints/lottery_tickets-") for f in written)
    assert any(f.startswith("checkpoints/ch5-defences-RS-") for f in written)  # written by the workers
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "local")))
    local = units.map_units(adversarial.lottery_unit, chain, executor="local", progress=False)
    net_local = units.map_units(defence_unit, network, executor="local", progress=False)
    assert files(tmp_path / "local") == written
    assert plain(on_ray[0]) == plain(local[0])
    assert without_seconds(net_on_ray[0]["history"]) == without_seconds(net_local[0]["history"])
    assert same_weights(load_trained_defence(net_on_ray[0]).state_dict(), load_trained_defence(net_local[0]).state_dict())
