"""Figures for the chapter notebooks, one module per topic: ``paper`` (ours beside the paper's numbers),
``features`` and ``lottery`` (Paper 1), ``tradeoff`` (FLOAT's CA-RA curves), ``counting`` (Paper 5), and the
modules the other chapters import directly. Matplotlib is imported inside the drawing functions, so importing
``helpers`` does not load it."""
from .paper import plot_ours_vs_paper
from .features import plot_sorted_usefulness, plot_normalized_usefulness, plot_actual_usefulness, plot_robust_usefulness, plot_robust_usefulness_kinds, plot_robust_usefulness_models, plot_feature_pruning
from .lottery import lottery_density_axes, plot_lottery_accuracy, plot_lottery_pgd, plot_lottery_scopes
from .tradeoff import plot_ca_ra, CA_RA_STYLES
from .counting import show_image, count_title, plot_count_errors, plot_saliency_maps, plot_second_derivative, plot_detections, plot_pixel_shortcut, plot_shape_examples

__all__ = ['plot_ours_vs_paper', 'plot_sorted_usefulness', 'plot_normalized_usefulness', 'plot_actual_usefulness', 'plot_robust_usefulness', 'plot_robust_usefulness_kinds', 'plot_robust_usefulness_models', 'plot_feature_pruning', 'lottery_density_axes', 'plot_lottery_accuracy', 'plot_lottery_pgd', 'plot_lottery_scopes', 'plot_ca_ra', 'CA_RA_STYLES', 'show_image', 'count_title', 'plot_count_errors', 'plot_saliency_maps', 'plot_second_derivative', 'plot_detections', 'plot_pixel_shortcut', 'plot_shape_examples']
