"""Training: the one loop (:func:`fit`, :func:`evaluate`) and every training recipe built on it.

Recipes (a paper's training procedure: losses, stages, load-or-train caches) live here, above the model
definitions they train; ``helpers.models`` never imports this package.
"""
from .loop import (AUGMENTATIONS, LR_SCHEDULES, OPTIMIZERS, OnEpochEnd, StepLoss, checkpoint_path, cosine_lr,
                   crop_flip, evaluate, fit, make_optimizer, recalibrate_batchnorm)

__all__ = ["AUGMENTATIONS", "LR_SCHEDULES", "OPTIMIZERS", "OnEpochEnd", "StepLoss", "checkpoint_path", "cosine_lr",
           "crop_flip", "evaluate", "fit", "make_optimizer", "recalibrate_batchnorm"]
