"""Small, readable model definitions shared by the chapters."""
from .cnn import CAPACITY_SCALES, BinaryFeatureCNN, SmallCNN, capacity_cnn
from .dynamic import (DYNAMIC_KINDS, ACTResNet, DynamicResNet, GatedWidthResNet, GateTrace, SkipResNet, all_gates_on,
                      dense_execution, dynamic_resnet, policy_sampling, run_block_on)
from .conditioned import (FLOAT_EVAL_LAMBDAS, FLOAT_TRAIN_LAMBDAS, OAT_LAMBDAS, Conditioning, DualBatchNorm2d, FiLM,
                          FloatConv2d, FloatLinear, LambdaEncoding, asic_conv_delays, conditioned_on, current_lambda,
                          noise_rescale, parameter_breakdown, seeded_noise, set_lambda, set_noise_generator)
from .mlp import MLP, count_parameters
from .resnet import ResNet, cifar_resnet, resnet34
from .slimmable import WIDTHS, SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d, active_channels, set_width

__all__ = ["CAPACITY_SCALES", "BinaryFeatureCNN", "MLP", "SmallCNN", "capacity_cnn", "count_parameters",
           "WIDTHS", "SlimmableConv2d", "SlimmableLinear", "SwitchableBatchNorm2d", "active_channels", "set_width",
           "FLOAT_EVAL_LAMBDAS", "FLOAT_TRAIN_LAMBDAS", "OAT_LAMBDAS", "Conditioning", "DualBatchNorm2d", "FiLM",
           "FloatConv2d", "FloatLinear", "LambdaEncoding", "asic_conv_delays", "conditioned_on", "current_lambda",
           "noise_rescale", "parameter_breakdown", "seeded_noise", "set_lambda", "set_noise_generator", "ResNet", "cifar_resnet", "resnet34",
           "DYNAMIC_KINDS", "ACTResNet", "DynamicResNet", "GatedWidthResNet", "GateTrace", "SkipResNet", "all_gates_on",
           "dense_execution", "dynamic_resnet", "policy_sampling", "run_block_on"]
