"""Adversarial attacks: gradient attacks (FGSM, PGD) shared by every chapter, energy attacks (ILFO, GradAuto)."""
from .energy import (ENERGY_METHODS, EnergyAttack, EnergyAttackResult, complexity_losses, energy_attack, gate_weights,
                     rectify_complexity_gradient)
from .autoattack import AutoAttackRand  # AutoAttack 'rand' (APGD-CE + APGD-DLR with EOT)
from .gradient import Attack, LossFn, classification_loss, fgsm, pgd, pgd_attack

__all__ = ["Attack", "AutoAttackRand", "LossFn", "classification_loss", "fgsm", "pgd", "pgd_attack",
           "ENERGY_METHODS", "EnergyAttack", "EnergyAttackResult", "complexity_losses", "energy_attack", "gate_weights",
           "rectify_complexity_gradient"]
