"""Small, readable model definitions shared by the chapters."""
from .cnn import CAPACITY_SCALES, BinaryFeatureCNN, SmallCNN, capacity_cnn
from .mlp import MLP, count_parameters
from .slimmable import WIDTHS, SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d, active_channels, set_width

__all__ = ["CAPACITY_SCALES", "BinaryFeatureCNN", "MLP", "SmallCNN", "capacity_cnn", "count_parameters",
           "WIDTHS", "SlimmableConv2d", "SlimmableLinear", "SwitchableBatchNorm2d", "active_channels", "set_width"]
