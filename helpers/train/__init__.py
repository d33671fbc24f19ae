"""Training: the one loop (:mod:`helpers.train.loop`: :func:`fit`, :func:`evaluate`) and every paper's training
recipe built on it, one module per recipe: ``adversarial`` (Paper 1), ``dynamic`` (GradAuto's victims),
``once_for_all`` and ``tradeoff`` (FLOAT), ``counting`` and ``defences`` (Paper 5).

Recipes (a paper's training procedure: losses, stages, load-or-train caches) live here, above the model
definitions they train; ``helpers.models`` never imports this package.
"""
from . import adversarial, counting, defences, dynamic, loop, once_for_all, tradeoff
from .loop import (AUGMENTATIONS, LR_SCHEDULES, OPTIMIZERS, OnEpochEnd, StepLoss, checkpoint_path, cosine_lr,
                   crop_flip, evaluate, fit, make_optimizer, recalibrate_batchnorm)
from .dynamic import DEFAULT_PENALTY, HRL_DEFAULTS, RECIPE_RULES, hybrid_rl_loss, recipe_net, savings, trained_dynamic_net
from .once_for_all import (METHODS, chapter_model, once_for_all_step_loss, sample_lambdas, slimmable_step_loss,
                           train_once_for_all)

__all__ = ["AUGMENTATIONS", "LR_SCHEDULES", "OPTIMIZERS", "OnEpochEnd", "StepLoss", "checkpoint_path", "cosine_lr",
           "crop_flip", "evaluate", "fit", "make_optimizer", "recalibrate_batchnorm",
           "DEFAULT_PENALTY", "HRL_DEFAULTS", "RECIPE_RULES", "hybrid_rl_loss", "recipe_net", "savings",
           "trained_dynamic_net", "METHODS", "chapter_model", "once_for_all_step_loss", "sample_lambdas",
           "slimmable_step_loss", "train_once_for_all"]
