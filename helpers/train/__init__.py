"""Training: the one loop (:func:`fit`, :func:`evaluate`) and every training recipe built on it.

Recipes (a paper's training procedure: losses, stages, load-or-train caches) live here, above the model
definitions they train; ``helpers.models`` never imports this package.
"""
from .loop import (AUGMENTATIONS, LR_SCHEDULES, OPTIMIZERS, OnEpochEnd, StepLoss, checkpoint_path, cosine_lr,
                   crop_flip, evaluate, fit, make_optimizer, recalibrate_batchnorm)
from .dynamic import DEFAULT_PENALTY, DYNAMIC_RECIPES, HRL_DEFAULTS, hybrid_rl_loss, recipe_net, trained_dynamic_net
from .once_for_all import (METHODS, chapter_model, once_for_all_step_loss, sample_lambdas, slimmable_step_loss,
                           train_once_for_all)

__all__ = ["AUGMENTATIONS", "LR_SCHEDULES", "OPTIMIZERS", "OnEpochEnd", "StepLoss", "checkpoint_path", "cosine_lr",
           "crop_flip", "evaluate", "fit", "make_optimizer", "recalibrate_batchnorm",
           "DEFAULT_PENALTY", "DYNAMIC_RECIPES", "HRL_DEFAULTS", "hybrid_rl_loss", "recipe_net", "trained_dynamic_net",
           "METHODS", "chapter_model", "once_for_all_step_loss", "sample_lambdas", "slimmable_step_loss",
           "train_once_for_all"]
