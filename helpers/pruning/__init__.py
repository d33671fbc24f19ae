"""Pruning: masks on ``torch.nn.utils.prune``, magnitude pruning, lottery tickets, sparse momentum, channels,
single-shot pruning at initialisation (SNIP, GraSP) and sparse storage formats.

A mask is a ``{parameter name: 0/1 tensor}`` dict over the prunable (Linear / Conv2d) weights; every
pruning method in the book produces one and attaches it with :func:`apply_masks`.
"""
from __future__ import annotations

from . import channels, lottery, magnitude, masks, single_shot, sparse_momentum, storage
from .channels import *  # noqa: F401,F403  channel_norms, channel_masks, channel_reduction, compression_ratio, ...
from .lottery import *  # noqa: F401,F403  lottery_ticket
from .magnitude import *  # noqa: F401,F403  magnitude_masks, prune_magnitude
from .masks import *  # noqa: F401,F403  prunable_parameters, apply_masks, current_masks, effective_weights, ...
from .single_shot import *  # noqa: F401,F403  snip_scores, grasp_scores, keep_top, single_shot_masks, ...
from .sparse_momentum import *  # noqa: F401,F403  SparseMomentum, cosine_death_rate
from .storage import *  # noqa: F401,F403  encode_weights, decode_weights, storage_size, STORAGE_FORMATS, ...

__all__ = [*masks.__all__, *magnitude.__all__, *lottery.__all__, *sparse_momentum.__all__, *channels.__all__,
           *single_shot.__all__, *storage.__all__]
