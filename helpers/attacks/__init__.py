"""Adversarial attacks: gradient attacks (FGSM, PGD) shared by every chapter."""
from .gradient import Attack, classification_loss, eval_mode, fgsm, pgd

__all__ = ["Attack", "classification_loss", "eval_mode", "fgsm", "pgd"]
