"""Feed-forward blocks: SwiGLU (Llama), GELU MLP (GPT-2), and the dual-FFN router over a small and a large SwiGLU.

Every FFN returns `(y, aux)`: aux is the router's `RouterOutput` for a routed FFN and None for a dense one, so the
block that calls it needs to know nothing about routing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from alm.model.config import ModelConfig
from alm.model.init import residual_projection


class SwiGLU(nn.Module):
    """down(silu(gate(x)) · up(x)), with gate and up fused into one matmul (gate rows first, then up)."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=bias)
        self.down = residual_projection(nn.Linear(d_ff, d_model, bias=bias))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.mlp(x), None

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The output alone (what the dual FFN's experts compute)."""
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class GeluMLP(nn.Module):
    """GPT-2's MLP: proj(gelu(fc(x))) with the tanh approximation GPT-2 was trained with."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.down = residual_projection(nn.Linear(d_ff, d_model, bias=bias))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.down(F.gelu(self.fc(x), approximate="tanh")), None


class RouterOutput(NamedTuple):
    aux_loss: torch.Tensor  # scalar, already weighted
    frac_large: torch.Tensor  # scalar: share of tokens the large expert served
    overflow: torch.Tensor  # scalar: share of tokens that wanted the large expert but hit its capacity


class DualFFN(nn.Module):
    """Per token, a learned router picks a small or a large SwiGLU expert (top-1 of 2).

    The chosen expert's output is scaled by its router probability, which is what gives the router a gradient
    from the language-modelling loss. Both experts run densely and a mask selects (static shapes, no host sync,
    no nonzero()); at this scale that is cheaper than gather/scatter. The router has a bias: a global
    preference for one expert is a legitimate thing to learn, and it lets tests force a one-hot route.
    The capacity limit applies in training mode only (see RouterConfig.capacity_factor).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        rc = cfg.router
        self.router = nn.Linear(cfg.d_model, 2, bias=True)  # logits for (small, large)
        self.small = SwiGLU(cfg.d_model, cfg.small_ffn_dim, cfg.bias)
        self.large = SwiGLU(cfg.d_model, cfg.large_ffn_dim, cfg.bias)
        self.aux_loss_weight, self.z_loss_weight = rc.aux_loss_weight, rc.z_loss_weight
        self.capacity_factor = rc.capacity_factor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RouterOutput]:
        logits = self.router(x).float()  # [B, T, 2]; routing decisions in fp32 even under autocast
        p_large = logits.softmax(dim=-1)[..., 1]
        wants_large = p_large > 0.5  # a tie goes to the cheaper expert
        limited = self.capacity_factor is not None and self.training
        use_large = wants_large & self._within_capacity(p_large) if limited else wants_large
        gate = torch.where(use_large, p_large, 1.0 - p_large).unsqueeze(-1).to(x.dtype)
        y = torch.where(use_large.unsqueeze(-1), self.large.mlp(x), self.small.mlp(x)) * gate

        # Switch-Transformer balance loss for 2 experts, 2·Σ_e f_e·P_e (1 when balanced), plus the z-loss.
        frac_large = use_large.float().mean()
        mean_p_large = p_large.mean()
        balance = 2.0 * (frac_large * mean_p_large + (1.0 - frac_large) * (1.0 - mean_p_large))
        z_loss = torch.logsumexp(logits, dim=-1).square().mean()
        aux = self.aux_loss_weight * balance + self.z_loss_weight * z_loss
        overflow = (wants_large & ~use_large).float().mean()
        return y, RouterOutput(aux, frac_large.detach(), overflow.detach())

    def _within_capacity(self, p_large: torch.Tensor) -> torch.Tensor:
        """At each position, only the ceil(capacity_factor·B/2) rows with the highest p_large may go large.

        Ranking runs over the batch dimension only, never over positions, so a token's route cannot depend on
        later tokens and a KV-cache decode makes exactly the choices of the full forward pass."""
        assert self.capacity_factor is not None
        batch = p_large.shape[0]
        capacity = math.ceil(self.capacity_factor * batch / 2)
        if capacity >= batch:
            return torch.ones_like(p_large, dtype=torch.bool)
        order = torch.argsort(p_large, dim=0, descending=True, stable=True)  # ties: lower row index first
        rank = torch.argsort(order, dim=0)
        return rank < capacity


def make_ffn(cfg: ModelConfig) -> nn.Module:
    if cfg.ffn == "swiglu":
        return SwiGLU(cfg.d_model, cfg.ffn_dim, cfg.bias)
    if cfg.ffn == "gelu":
        return GeluMLP(cfg.d_model, cfg.ffn_dim, cfg.bias)
    return DualFFN(cfg)
