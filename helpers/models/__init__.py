"""Small, readable model definitions shared by the chapters."""
from .cnn import CAPACITY_SCALES, BinaryFeatureCNN, SmallCNN, capacity_cnn
from .mlp import MLP, count_parameters

__all__ = ["CAPACITY_SCALES", "BinaryFeatureCNN", "MLP", "SmallCNN", "capacity_cnn", "count_parameters"]
