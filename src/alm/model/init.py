"""Which linear layers write into the residual stream: marked by the module that builds them, read by the init.

GPT-2 scales those projections' initial weights by 1/sqrt(2·n_layers) so the residual stream's variance does not
grow with depth. A mark on the layer itself (rather than a pattern over parameter names) keeps that true for any
block a new architecture adds.
"""

from __future__ import annotations

from torch import nn

_MARK = "writes_residual"


def residual_projection(linear: nn.Linear) -> nn.Linear:
    """Mark `linear` as an output projection into the residual stream (attention out, FFN down); returns it."""
    setattr(linear, _MARK, True)
    return linear


def is_residual_projection(module: nn.Module) -> bool:
    return getattr(module, _MARK, False) is True
