"""`ModelConfig`: the architecture of a decoder-only transformer, as plain typed data (no torch here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from alm.config import require
from alm.errors import ConfigError


@dataclass
class RouterConfig:
    """The dual-FFN router: each token goes to a small or a large SwiGLU expert (`ffn: dual`)."""

    small_d_ff: int | None = None  # None = a quarter of the large expert, rounded up to multiple_of
    large_d_ff: int | None = None  # None = the dense FFN width (ModelConfig.ffn_dim)
    aux_loss_weight: float = 0.01  # Switch-style load balance: pushes the large-expert share towards 1/2
    z_loss_weight: float = 0.001  # ST-MoE router z-loss: keeps router logits small
    # Large-expert slots per sequence position = ceil(capacity_factor * batch / 2); tokens over it fall back to
    # the small expert. Per position (never across positions), so the model stays causal. Training mode only:
    # in eval mode (evaluation, sampling) every token takes its router's choice, so a sequence's output never
    # depends on the other sequences of its batch. None = no limit.
    capacity_factor: float | None = None

    def validate(self) -> None:
        for key in ("small_d_ff", "large_d_ff"):
            value = getattr(self, key)
            require(value is None or value > 0, key, f"must be a positive integer or null, got {value}")
        require(self.aux_loss_weight >= 0, "aux_loss_weight", f"must be >= 0, got {self.aux_loss_weight}")
        require(self.z_loss_weight >= 0, "z_loss_weight", f"must be >= 0, got {self.z_loss_weight}")
        cf = self.capacity_factor
        require(cf is None or cf > 0, "capacity_factor", f"must be > 0 or null (no limit), got {cf}")


@dataclass
class ModelConfig:
    """A Llama-class decoder by default (RMSNorm, pre-norm, RoPE, SwiGLU); the other choices are ablations."""

    vocab_size: int | None = None  # None = take it from the tokenizer; a model needs it set
    d_model: int = 384
    n_layers: int = 8
    n_heads: int = 6
    n_kv_heads: int | None = None  # None = n_heads (MHA); 1 = MQA; in between = GQA
    d_ff: int | None = None  # None = 4·d_model for gelu, else SwiGLU's 8/3·d_model rounded up to multiple_of
    multiple_of: int = 64
    max_seq_len: int = 512
    norm: Literal["rmsnorm", "layernorm", "none"] = "rmsnorm"
    norm_position: Literal["pre", "post"] = "pre"
    norm_eps: float = 1e-5
    position: Literal["rope", "alibi", "nope", "learned"] = "rope"
    rope_theta: float = 10000.0
    ffn: Literal["swiglu", "gelu", "dual"] = "swiglu"
    router: RouterConfig = field(default_factory=RouterConfig)
    tie_embeddings: bool = True
    bias: bool = False  # biases in the attention and FFN projections (the output head never has one)
    dropout: float = 0.0
    init_std: float = 0.02

    # -- derived sizes -------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_dim(self) -> int:
        """Hidden width of the dense FFN (and of the dual FFN's large expert unless set)."""
        if self.d_ff is not None:
            return self.d_ff
        if self.ffn == "gelu":
            return 4 * self.d_model
        return round_up(math.ceil(8 * self.d_model / 3), self.multiple_of)

    @property
    def large_ffn_dim(self) -> int:
        return self.router.large_d_ff or self.ffn_dim

    @property
    def small_ffn_dim(self) -> int:
        return self.router.small_d_ff or round_up(math.ceil(self.large_ffn_dim / 4), self.multiple_of)

    # -- validation ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        v = self.vocab_size
        require(
            v is None or v > 0,
            "vocab_size",
            f"must be a positive integer or null (from the tokenizer), got {v}",
        )
        for key in ("d_model", "n_layers", "n_heads", "multiple_of", "max_seq_len"):
            value = getattr(self, key)
            require(value > 0, key, f"must be a positive integer, got {value}")
        require(
            self.d_model % self.n_heads == 0,
            "n_heads",
            f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; pick a divisor of d_model",
        )
        kv = self.n_kv_heads
        require(
            kv is None or kv > 0, "n_kv_heads", f"must be a positive integer or null (= n_heads), got {kv}"
        )
        require(
            self.n_heads % self.kv_heads == 0,
            "n_kv_heads",
            f"n_heads={self.n_heads} is not divisible by n_kv_heads={kv}; each KV head serves a whole group",
        )
        require(
            self.position != "rope" or self.head_dim % 2 == 0,
            "n_heads",
            f"RoPE rotates pairs of channels, so head_dim (d_model/n_heads = {self.head_dim}) must be even",
        )
        require(
            self.d_ff is None or self.d_ff > 0, "d_ff", f"must be a positive integer or null, got {self.d_ff}"
        )
        require(self.norm_eps > 0, "norm_eps", f"must be > 0, got {self.norm_eps}")
        require(self.rope_theta > 0, "rope_theta", f"must be > 0, got {self.rope_theta}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.init_std > 0, "init_std", f"must be > 0, got {self.init_std}")
        require(
            not (self.norm == "none" and self.norm_position == "post"),
            "norm_position",
            "'post' needs a norm; with norm: none leave norm_position at 'pre'",
        )
        try:
            self.router.validate()
        except ConfigError as exc:  # keys are relative to this dataclass: router.<key>
            raise ConfigError(f"router.{exc.key}", exc.detail, hint=exc.hint) from None

    def require_vocab(self) -> int:
        """The vocabulary size, or a ConfigError saying how to provide it."""
        if self.vocab_size is None:
            raise ConfigError(
                "vocab_size",
                "is not set; a model needs it",
                hint="set model.vocab_size, or let the trainer take it from the tokenizer",
            )
        return self.vocab_size


def round_up(value: int, multiple: int) -> int:
    return multiple * math.ceil(value / multiple)
