"""Losses and training of the thesis's defence networks (Paper 5, Sec. 3.2.1 and 3.3.1): squared error to one-hot
targets, Gradient Magnitude Reduction (L + 0.5 * ||dL/dx||_2 by double backprop), and the Sec. 3.3.1 recipe, also as
``helpers.units`` units (:func:`defence_units`, :func:`defence_unit`: one network and seed each; the driver loads the
trained networks with :func:`load_trained_defence`)."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checks, device, limit_cpu_threads, seed_everything
from ..attacks import Attack, pgd_attack
from ..data import load_quietly
from ..io import load_checkpoint
from ..models.defences import DEFENCES, THESIS_PIXEL_SCALE, Defence, ElasticSigmoid, pooled_defence_network
from .loop import StepLoss, checkpoint_path, evaluate, fit

__all__ = ["GMR_REDUCTIONS", "THESIS_TRAINING", "gmr_loss", "input_gradient_norms", "onehot_mse_loss", "step_loss_for",
           "defence_checkpoint", "train_defence", "defence_units", "defence_network", "defence_unit",
           "load_trained_defence", "fgsm_accuracies", "lead_over_best", "margin_loss", "PreSigmoid", "pre_sigmoid", "pgd_accuracies",
           "zero_pair_share", "input_gradient_norm", "gmr_penalty_share", "elastic_slopes", "sigmoid_inputs", "centring",
           "training_summary", "mechanisms"]

#: Training settings of Sec. 3.3.1 shared by all six networks (momentum 0.85 and the 20-epoch patience:
#: the official code and our reading of "its 20 epoch limit"; eps 77 of 255 follows Madry et al.'s 0.3).
THESIS_TRAINING: dict[str, float | int | str] = {
    "batch_size": 20, "momentum": 0.85, "validation_size": 4_200, "max_epochs": 100, "patience": 20,
    "fgsm_eps": 77 / 255, "loss": "onehot_mse_loss",
}
GMR_REDUCTIONS = ("sample", "batch")


# ---------------------------------------------------------------------------------------------------
# Losses: squared error to one-hot targets (Sec. 3.3.1) and Gradient Magnitude Reduction (Sec. 3.2.1)
# ---------------------------------------------------------------------------------------------------


def onehot_mse_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample (c - o)^T (c - o) with c the one-hot target (Sec. 3.3.1); its batch mean is the thesis's loss.

    Usable as ``loss_fn`` by :func:`helpers.train.fit` and by :func:`helpers.attacks.fgsm` / ``pgd`` (which ascend it).
    """
    if output.dim() != 2:
        raise ValueError(f"output must be (N, classes), got {tuple(output.shape)}")
    target = F.one_hot(y, output.shape[1]).to(output.dtype)
    return (output - target).pow(2).sum(dim=1)


def margin_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample margin max_{j != y} z_j - z_y of the outputs ``z`` (Carlini and Wagner's f_6 without the clamp):
    positive when the image is misclassified; an attack ascends it. On pre-sigmoid outputs (:func:`pre_sigmoid`) it
    does not saturate as the squared error through the output sigmoids does."""
    if output.dim() != 2 or len(output) != len(y):
        raise ValueError(f"output must be (N, classes) for N labels, got {tuple(output.shape)} and {tuple(y.shape)}")
    true = output.gather(1, y[:, None])[:, 0]
    others = output.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - true


def input_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = onehot_mse_loss,
                         pixel_scale: float = 1.0, create_graph: bool = True,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample losses L_i, norms ||dL_i/dx_i||_2 and outputs, the norms by double backprop (Sec. 3.2.1).

    The norm is w.r.t. the pixels the layers see (``pixel_scale * x``); samples must not interact (no batch statistics).
    """
    checks.number("pixel_scale", pixel_scale, low=0.0, low_open=True)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        output = model(x)
        losses = loss_fn(output, y)
        (grad,) = torch.autograd.grad(losses.sum(), x, create_graph=create_graph)
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1) / pixel_scale
    return losses, norms, output


def gmr_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, weight: float = 0.5,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = onehot_mse_loss,
             pixel_scale: float = 1.0, reduction: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient Magnitude Reduction: mean L + weight * ||dL/dx||_2 (Sec. 3.2.1; weight 0.5, Sec. 3.3.1); and the outputs.

    ``reduction="batch"`` (the official ``Friendly/tackons.py``): one norm of d(mean L)/dX over the whole batch, i.e.
    sqrt(sum_i ||dL_i/dx_i||^2) / N; "sample": the mean of the per-image norms (about sqrt(N) times larger).

    A ``StepLoss``: ``fit(..., step_loss=partial(gmr_loss, pixel_scale=255))``. With ``weight=0`` it is
    the plain mean loss, without double backprop.
    """
    checks.number("weight", weight, low=0.0)
    if reduction not in GMR_REDUCTIONS:
        raise ValueError(f"reduction must be one of {GMR_REDUCTIONS}, got {reduction!r}")
    if weight == 0:
        output = model(x)
        return loss_fn(output, y).mean(), output
    losses, norms, output = input_gradient_norms(model, x, y, loss_fn=loss_fn, pixel_scale=pixel_scale)
    if reduction == "sample":
        penalty = norms.mean()
    else:  # ||d(mean_i L_i)/dX||_F = sqrt(sum_i ||dL_i/dx_i||^2) / N
        penalty = torch.linalg.vector_norm(norms) / len(norms)
    return losses.mean() + weight * penalty, output



def step_loss_for(defence: Defence, pixel_scale: float = THESIS_PIXEL_SCALE,
                  reduction: str = "batch") -> StepLoss | None:
    """The training loss of ``defence`` for ``fit(step_loss=...)``: :func:`gmr_loss` with its weight and
    ``reduction`` (default the official whole-batch norm), or ``None`` (train with ``loss_fn=onehot_mse_loss``).
    ``pixel_scale`` must be the one the network was built with (the penalty is in the layers' pixel units)."""
    checks.choice("reduction", reduction, GMR_REDUCTIONS)
    if not defence.uses_gmr:
        return None
    return partial(gmr_loss, weight=defence.gmr_weight, pixel_scale=pixel_scale, reduction=reduction)


def defence_checkpoint(name: str, *, seed: int, dataset: str, train_n: int, epochs: int, patience: int,
                       pd_pool: int, gmr_reduction: str = "batch", target_accuracy: float | None = None) -> Path:
    """Where :func:`train_defence` keeps the Table 3.1 network ``name`` trained from ``seed`` on ``train_n`` images of
    ``dataset`` (the name of the dataset used): fit's checkpoint under the work root, keyed by these settings
    (``gmr_reduction`` only for GMR and GMRES, and only when not "sample", and ``target_accuracy`` only when set, so
    that older checkpoints keep their key)."""
    spec = DEFENCES[checks.choice("name", name, list(DEFENCES))]
    checks.choice("gmr_reduction", gmr_reduction, GMR_REDUCTIONS)
    settings = dict(network=name, seed=seed, dataset=dataset, train_n=train_n, epochs=epochs,
                    patience=patience, pd_pool=pd_pool if name == "PD" else None, lr=spec.lr)
    if spec.uses_gmr and gmr_reduction != "sample":
        settings["gmr_reduction"] = gmr_reduction
    if target_accuracy is not None:
        settings["target_accuracy"] = checks.number("target_accuracy", target_accuracy, low=0.0, high=1.0, low_open=True)
    return checkpoint_path(f"ch5-defences-{name}", **settings)


def train_defence(net: nn.Module, name: str, train: tuple[torch.Tensor, torch.Tensor],
                  validation: tuple[torch.Tensor, torch.Tensor], *, epochs: int, patience: int, seed: int,
                  dataset: str, pd_pool: int, gmr_reduction: str = "batch", target_accuracy: float | None = None,
                  desc: str | None = None) -> list[dict]:
    """Train the Table 3.1 network ``name`` as Sec. 3.3.1 does: SGD at its learning rate, batches of 20, momentum
    0.85, squared error to one-hot targets (plus GMR for GMR and GMRES, reduced by ``gmr_reduction``: "batch" is the
    official penalty), early stopping on ``validation`` after ``patience`` epochs without gain. With
    ``target_accuracy``, training also stops after the first epoch whose validation accuracy reaches it (networks
    trained to the same clean accuracy; the thesis has no such rule). Loads or writes its checkpoint
    (:func:`defence_checkpoint`, after every epoch, so a run resumes); returns fit's records."""
    spec = DEFENCES[checks.choice("name", name, list(DEFENCES))]
    checkpoint = defence_checkpoint(name, seed=seed, dataset=dataset, train_n=len(train[1]), epochs=epochs,
                                    patience=patience, pd_pool=pd_pool, gmr_reduction=gmr_reduction,
                                    target_accuracy=target_accuracy)
    run = partial(fit, net, train, lr=spec.lr, batch_size=THESIS_TRAINING["batch_size"],
                  momentum=THESIS_TRAINING["momentum"], loss_fn=onehot_mse_loss,
                  step_loss=step_loss_for(spec, reduction=gmr_reduction),
                  validation=validation, early_stopping=patience, seed=seed, checkpoint=checkpoint,
                  desc=desc or f"train {name}")
    if target_accuracy is None:
        return run(epochs=epochs)
    done = len(load_checkpoint(checkpoint, keys=("history",))["history"]) if checkpoint.exists() else 0
    for cap in range(max(1, done), epochs + 1):  # one more epoch per call; fit resumes from the checkpoint
        history = run(epochs=cap)
        if len(history) < cap or history[-1]["val_accuracy"] >= target_accuracy:  # early-stopped, or at the target
            break
    return history


def defence_units(dataset: str, networks: Sequence[str], seeds: Sequence[int], *, split_seed: int,
                  validation_n: int, train_n: int | None, epochs: int, patience: int,
                  pd_pool: int, gmr_reduction: str = "batch",
                  target_accuracy: float | None = None) -> list[dict[str, Any]]:
    """The training units of Sec. 3.3.1 (:func:`defence_unit`), as plain settings: per seed ``s`` of ``seeds``, each
    network of ``networks`` from ``s``, then the black-box source S' (network S from ``s + len(seeds)``, label
    ``S′``). The data: ``dataset``'s training images in a shuffle seeded with ``split_seed``, the first
    ``validation_n`` for validation and the next ``train_n`` (``None``: all the rest) for training; GMR and GMRES
    penalise with ``gmr_reduction``; ``target_accuracy`` as :func:`train_defence` takes it."""
    checks.text("dataset", dataset)
    checks.choice("gmr_reduction", gmr_reduction, GMR_REDUCTIONS)
    for name in networks:
        checks.choice("networks", name, list(DEFENCES))
    seeds = checks.seeds(seeds)
    common = dict(dataset=dataset, split_seed=split_seed, validation_n=validation_n, train_n=train_n, epochs=epochs,
                  patience=patience, pd_pool=pd_pool, gmr_reduction=gmr_reduction, target_accuracy=target_accuracy)
    return [dict(common, network=name, seed=seed, label=label, of_seed=s) for s in seeds
            for name, seed, label in [*((n, s, n) for n in networks), ("S", s + len(seeds), "S′")]]


def defence_network(name: str, seed: int, *, image_shape: Sequence[int], pd_pool: int,
                    device: torch.device | str = "cpu") -> nn.Module:
    """The Table 3.1 network ``name`` initialised from ``seed`` (``torch.manual_seed``), PD on images average-pooled
    by ``pd_pool`` (:func:`helpers.models.defences.pooled_defence_network`), on ``device``."""
    torch.manual_seed(seed)
    return pooled_defence_network(name, image_shape=tuple(image_shape), pool=pd_pool).to(device)


def defence_unit(settings: dict[str, Any]) -> dict[str, Any]:
    """One unit of Sec. 3.3.1 (a ``helpers.units`` unit): load the split :func:`defence_units` describes, build the
    network (:func:`defence_network`) and :func:`train_defence` it on the best device with one CPU thread
    (checkpointed under the work root after every epoch; a rerun resumes). Returns the unit's ``network, seed,
    label, of_seed``, fit's ``history``, and what :func:`load_trained_defence` needs: ``checkpoint, image_shape,
    pd_pool``."""
    name, seed = settings["network"], settings["seed"]
    dev = device()
    limit_cpu_threads(dev, 1)
    seed_everything(settings["split_seed"])  # and deterministic kernels, as the notebook's run sets them
    full_train = load_quietly(settings["dataset"], "train")
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(settings["split_seed"]))
    val_idx = order[:settings["validation_n"]]
    train_idx = order[settings["validation_n"]:][:settings["train_n"]]
    validation = (full_train.x[val_idx], full_train.y[val_idx])
    train = (full_train.x[train_idx], full_train.y[train_idx])
    image_shape = list(full_train.x.shape[1:])
    net = defence_network(name, seed, image_shape=image_shape, pd_pool=settings["pd_pool"], device=dev)
    history = train_defence(net, name, train, validation, epochs=settings["epochs"], patience=settings["patience"],
                            seed=seed, dataset=full_train.name, pd_pool=settings["pd_pool"],
                            gmr_reduction=settings.get("gmr_reduction", "batch"),
                            target_accuracy=settings.get("target_accuracy"), desc=f"train {settings['label']}, seed {settings['of_seed']}")
    checkpoint = defence_checkpoint(name, seed=seed, dataset=full_train.name, train_n=len(train[1]),
                                    epochs=settings["epochs"], patience=settings["patience"], pd_pool=settings["pd_pool"],
                                    gmr_reduction=settings.get("gmr_reduction", "batch"),
                                    target_accuracy=settings.get("target_accuracy"))
    return {"network": name, "seed": seed, "label": settings["label"], "of_seed": settings["of_seed"],
            "history": history, "checkpoint": str(checkpoint), "image_shape": image_shape,
            "pd_pool": settings["pd_pool"]}


def load_trained_defence(trained: Mapping[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """The network a :func:`defence_unit` trained (``trained``: its result), from its checkpoint (``weights_only``):
    built as the unit built it, with the weights training ended on (the best validation epoch's), in eval mode."""
    net = defence_network(trained["network"], trained["seed"], image_shape=trained["image_shape"],
                          pd_pool=trained["pd_pool"], device=device)
    state = load_checkpoint(trained["checkpoint"], keys=("model",))
    best = state.get("best")
    net.load_state_dict(best["model"] if best else state["model"])  # fit's restore_best
    return net.eval()


def fgsm_accuracies(nets: dict[str, nn.Module], data: tuple[torch.Tensor, torch.Tensor], *, eps: float,
                    small_eps: float, source: nn.Module, batch_size: int, seed: int,
                    per_example: bool = False) -> dict[str, dict]:
    """Tables 3.2 and 3.3 for each net: clean accuracy, white-box FGSM at ``eps``, black-box FGSM crafted on
    ``source`` (the thesis's second standard net), and white-box FGSM at ``small_eps`` (Sec. 3.3.3), all on the
    squared-error loss the nets were trained with. With ``per_example``, each net's entry also holds
    ``"correct"``: ``{"clean", "white", "black", "white_small"}`` -> 1/0 per image in the data's order (the scores
    :func:`helpers.claims.bootstrap` pairs across nets and seeds)."""
    fgsm, fgsm_small = Attack("fgsm", eps=eps), Attack("fgsm", eps=small_eps)
    measured = {}
    for name, net in nets.items():
        kwargs = dict(batch_size=batch_size, seed=seed, loss_fn=onehot_mse_loss, per_example=per_example)
        white = evaluate(net, data, fgsm, **kwargs)
        black = evaluate(net, data, fgsm, source=source, **kwargs)
        small = evaluate(net, data, fgsm_small, **kwargs)
        measured[name] = {"clean": white["clean"], "white": white["robust"], "black": black["robust"],
                          "white_small": small["robust"]}
        if per_example:
            measured[name]["correct"] = {"clean": white["clean_correct"], "white": white["robust_correct"],
                                         "black": black["robust_correct"], "white_small": small["robust_correct"]}
    return measured


def lead_over_best(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """``mean(first) - max_k mean(others[k])`` over arrays ``[..., seeds, examples]``: how far the first arm is
    ahead of the best of the others (negative: behind it). A vectorized statistic for
    :func:`helpers.claims.bootstrap` (e.g. "A has the best black-box accuracy of the six networks")."""
    if not others:
        raise ValueError("lead_over_best needs at least one other arm")
    best = np.max(np.stack([o.mean(axis=(-2, -1)) for o in others]), axis=0)
    return first.mean(axis=(-2, -1)) - best


# ---------------------------------------------------------------------------------------------------
# The mechanisms the thesis argues with (Sec. 3.3.3), measured; and white-box PGD on two losses
# ---------------------------------------------------------------------------------------------------


def _chain(net: nn.Module) -> list[nn.Module]:
    """The modules of nested ``nn.Sequential`` s in the order they run (the pooled PD is pooling, then a network)."""
    if not isinstance(net, nn.Sequential):
        return [net]
    return [m for child in net.children() for m in _chain(child)]


class PreSigmoid(nn.Module):
    """``net`` without its output sigmoid: the same classifier (for an Elastic Sigmoid, ``s * z`` keeps its order),
    with outputs that never saturate, for attacks on a margin (:func:`margin_loss`). A network
    whose last module is no sigmoid (A) is returned as it is by :func:`pre_sigmoid`. Shares ``net``'s modules."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        *body, last = _chain(net)
        if not isinstance(last, (nn.Sigmoid, ElasticSigmoid)):
            raise ValueError(f"net must end in a sigmoid, got {type(last).__name__}")
        self.body, self.last = nn.Sequential(*body), last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        return self.last.slope * z if isinstance(self.last, ElasticSigmoid) else z


def pre_sigmoid(net: nn.Sequential) -> nn.Module:
    """:class:`PreSigmoid` of ``net`` when it ends in a sigmoid, else ``net`` (its outputs are already linear)."""
    last = _chain(net)[-1]
    return PreSigmoid(net) if isinstance(last, (nn.Sigmoid, ElasticSigmoid)) else net


def pgd_accuracies(nets: dict[str, nn.Module], data: tuple[torch.Tensor, torch.Tensor], *, eps: float, steps: int,
                   step_fraction: float, batch_size: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """White-box PGD-``steps`` at ``eps`` on each net, 1/0 per image: ``"mse"`` (ascending the training loss, as FGSM
    does), ``"margin"`` (ascending :func:`margin_loss` of the pre-sigmoid outputs,
    :func:`pre_sigmoid`) and ``"both"`` (the image survives both: the stronger, per-image worst-case attack)."""
    attack = pgd_attack(eps, steps, step_fraction)
    out = {}
    for name, net in nets.items():
        mse = evaluate(net, data, attack, batch_size=batch_size, seed=seed, loss_fn=onehot_mse_loss, per_example=True)
        margin = evaluate(net, data, attack, batch_size=batch_size, seed=seed, loss_fn=margin_loss,
                          source=pre_sigmoid(net), per_example=True)
        out[name] = {"mse": mse["robust_correct"], "margin": margin["robust_correct"],
                     "both": np.minimum(mse["robust_correct"], margin["robust_correct"])}
    return out


def zero_pair_share(x: torch.Tensor, pool: int = 1) -> np.ndarray:
    """Per image, the share of ordered pairs of distinct pixels that are both 0 in the image PD compares (``x``
    average-pooled by ``pool``): the pairs whose difference sits at the middle of PD's sigmoid (Sec. 3.3.3)."""
    checks.integer("pool", pool, low=1)
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
    seen = F.avg_pool2d(x, pool) if pool > 1 else x
    zero = (seen.flatten(1) == 0).double()
    k, p = zero.sum(1), zero.shape[1]
    return (k * (k - 1) / (p * (p - 1))).numpy()


def input_gradient_norm(net: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, batch_size: int = 200,
                        pixel_scale: float = THESIS_PIXEL_SCALE) -> np.ndarray:
    """Per image, ||dL_i/dx_i||_2 of the training loss in the layers' pixel units (0..255), the quantity GMR
    penalises (Sec. 3.2.1), in eval mode. For nets without batch statistics (S, GMR, GMRES)."""
    net.eval()
    norms = [input_gradient_norms(net, xb, yb, pixel_scale=pixel_scale, create_graph=False)[1].detach()
             for xb, yb in zip(data[0].split(batch_size), data[1].split(batch_size))]
    return torch.cat(norms).double().numpy()


def gmr_penalty_share(net: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, weight: float = 0.5,
                      reduction: str = "batch", batch_size: int = 20,
                      pixel_scale: float = THESIS_PIXEL_SCALE) -> float:
    """The GMR term ``weight * penalty`` over the loss it is added to, averaged over batches of ``batch_size`` of
    ``data`` (training's batches; eval mode): how much of GMR's objective the penalty is."""
    checks.choice("reduction", reduction, GMR_REDUCTIONS)
    net.eval()
    shares = []
    for xb, yb in zip(data[0].split(batch_size), data[1].split(batch_size)):
        losses, norms, _ = input_gradient_norms(net, xb, yb, pixel_scale=pixel_scale, create_graph=False)
        penalty = norms.mean() if reduction == "sample" else torch.linalg.vector_norm(norms) / len(norms)
        shares.append(float((weight * penalty / losses.mean()).detach()))
    return float(np.mean(shares))


def elastic_slopes(net: nn.Module) -> list[float]:
    """The learned slopes ``s`` of every :class:`ElasticSigmoid` of ``net``, input to output (Sec. 3.2.2; start 1)."""
    return [float(m.slope.detach()) for m in net.modules() if isinstance(m, ElasticSigmoid)]


@torch.no_grad()
def sigmoid_inputs(net: nn.Module, x: torch.Tensor, *, batch_size: int = 200) -> list[torch.Tensor]:
    """The inputs of each sigmoid of ``net`` (its pre-activations, after batch renormalisation in RS) on ``x``, in
    eval mode, batches of ``batch_size`` (the test batches, for nets that normalise by batch statistics)."""
    acts = [m for m in net.modules() if isinstance(m, (nn.Sigmoid, ElasticSigmoid))]
    seen: list[list[torch.Tensor]] = [[] for _ in acts]
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: seen[i].append(inp[0].detach().flatten(1)))
             for i, m in enumerate(acts)]
    try:
        net.eval()
        for xb in x.split(batch_size):
            net(xb)
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(s) for s in seen]


def centring(net: nn.Module, x: torch.Tensor, *, batch_size: int = 200, saturated: float = 5.0) -> dict[str, float]:
    """How centred the first hidden layer's sigmoid inputs z are (Sec. 3.3.3: batch normalisation keeps them "centered
    near, and tight around, the origin"): ``mean |z|``, ``|mean z| per unit`` (averaged over units) and the share of
    |z| > ``saturated`` (sigma' < 0.007: saturated)."""
    z = sigmoid_inputs(net, x, batch_size=batch_size)[0].double()
    return {"mean |z|": float(z.abs().mean()), "|mean z| per unit": float(z.mean(0).abs().mean()),
            f"share |z| > {saturated:g}": float((z.abs() > saturated).double().mean())}


def training_summary(histories: Mapping[tuple[str, int], list[dict]], nets: Mapping[tuple[str, int], nn.Module],
                     train: tuple[torch.Tensor, torch.Tensor], *, batch_size: int = 200):
    """One row per trained network and seed (``histories``, ``nets``: keyed by (label, seed)): epochs run, best
    epoch, its validation accuracy, the final network's accuracy on the training images (the thesis "got close" to
    perfect training-set classification, Sec. 3.3.1) and training seconds; a DataFrame indexed by (network, seed)."""
    import pandas as pd

    rows = [{"network": label, "seed": s, "epochs run": len(h),
             "best epoch": int(np.argmax([r["val_accuracy"] for r in h])) + 1,
             "best validation accuracy": max(r["val_accuracy"] for r in h),
             "training-set accuracy": evaluate(nets[label, s], train, batch_size=batch_size)["clean"],
             "seconds": sum(r["seconds"] for r in h)} for (label, s), h in histories.items()]
    return pd.DataFrame(rows).set_index(["network", "seed"]).sort_index(level=0, sort_remaining=False)


def mechanisms(seed_nets: Sequence[Mapping[str, nn.Module]], data: tuple[torch.Tensor, torch.Tensor], *,
               pd_pool: int, gmr_reduction: str = "batch", batch_size: int = 200) -> dict[str, Any]:
    """The mechanisms of Sec. 3.3.3 measured on ``data`` for each seed's networks (``seed_nets``: one
    {name: network} per seed), means over seeds: ``grad_norm`` (mean per-image ||dL/dx||_2 in pixel units, S, GMR,
    GMRES), ``penalty_share`` (GMR's term over the loss on batches of 20, GMR and GMRES), ``slopes`` (GMRES's Elastic
    Sigmoid slopes per seed), ``zero_pairs`` (share of pixel pairs both 0: in the image PD sees, pooled by
    ``pd_pool``, and at full resolution) and ``centring`` (:func:`centring` of the first layer's sigmoid inputs, S
    and RS)."""
    def mean_over_seeds(fn, names):
        return {n: float(np.mean([fn(nets[n]) for nets in seed_nets])) for n in names if n in seed_nets[0]}

    centred = {n: [centring(nets[n], data[0], batch_size=batch_size) for nets in seed_nets]
               for n in ("S", "RS") if n in seed_nets[0]}
    return {
        "grad_norm": mean_over_seeds(lambda net: input_gradient_norm(net, data, batch_size=batch_size).mean(),
                                     ("S", "GMR", "GMRES")),
        "penalty_share": mean_over_seeds(lambda net: gmr_penalty_share(net, data, reduction=gmr_reduction),
                                         ("GMR", "GMRES")),
        "slopes": [elastic_slopes(nets["GMRES"]) for nets in seed_nets] if "GMRES" in seed_nets[0] else [],
        "zero_pairs": {"as PD sees it": float(zero_pair_share(data[0], pd_pool).mean()),
                       "full resolution": float(zero_pair_share(data[0]).mean())},
        "centring": {n: {k: float(np.mean([c[k] for c in cs])) for k in cs[0]} for n, cs in centred.items()},
    }
