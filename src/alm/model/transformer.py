"""The decoder: embeddings → N × (attention, FFN) blocks → norm → LM head. Read this file top to bottom."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from alm.errors import UsageError
from alm.model.attention import Attention, AttentionContext
from alm.model.cache import CacheWriter, KVCache
from alm.model.config import ModelConfig
from alm.model.ffn import RouterOutput, make_ffn
from alm.model.init import is_residual_projection
from alm.model.kernels import decode_attention_supports
from alm.model.loss import linear_cross_entropy
from alm.model.norms import RMSNorm, make_norm
from alm.model.positions import RotaryEmbedding, alibi_bias, alibi_bias_at, alibi_slopes, causal_mask_at


@dataclass
class ModelOutput:
    loss: torch.Tensor | None  # mean cross-entropy over targets != -100; excludes aux_loss
    aux_loss: torch.Tensor  # scalar: router balance + z-loss, weighted, mean over routed layers (0 without)
    router_stats: dict[str, torch.Tensor] | None  # per-layer "frac_large", "overflow" [n_layers], on device
    # The final hidden state [B, T, d_model], kept only after a training forward (targets with grad): there the
    # LM head is fused into the loss and no logits are built; `model.head(out.hidden)` computes them.
    hidden: torch.Tensor | None = None
    _logits: torch.Tensor | None = field(default=None, repr=False)

    @property
    def logits(self) -> torch.Tensor:
        """[B, T, V] (or the last `logits_to_keep` positions). Never computed behind the caller's back."""
        if self._logits is None:
            raise UsageError(
                "this training forward fused the LM head into the loss, so it built no logits",
                hint="compute them explicitly with model.head(out.hidden), or run the forward without grad",
            )
        return self._logits


class Block(nn.Module):
    """One transformer layer. Pre-norm: x + f(norm(x)); post-norm (the 2017 original): norm(x + f(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg)
        self.ffn_norm = make_norm(cfg)
        self.ffn = make_ffn(cfg)  # (y, aux): aux is a RouterOutput for a routed FFN, else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, ctx: AttentionContext, cache: CacheWriter | None, layer: int
    ) -> tuple[torch.Tensor, RouterOutput | None]:
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.attn_norm(x), ctx, cache, layer))
            h, aux = self.ffn(self.ffn_norm(x))
            return x + self.dropout(h), aux
        x = self.attn_norm(x + self.dropout(self.attn(x, ctx, cache, layer)))
        h, aux = self.ffn(x)
        return self.ffn_norm(x + self.dropout(h)), aux


class Transformer(nn.Module):
    alibi_slopes: torch.Tensor  # a buffer, with position: alibi

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        vocab = config.require_vocab()
        self.tok_emb = nn.Embedding(vocab, config.d_model)
        self.pos_emb = (
            nn.Embedding(config.max_seq_len, config.d_model) if config.position == "learned" else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        # Post-norm blocks already end in a norm; pre-norm needs one before the head.
        self.norm = make_norm(config) if config.norm_position == "pre" else nn.Identity()
        self.head = nn.Linear(config.d_model, vocab, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        self.rope: RotaryEmbedding | None = (
            RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_theta)
            if config.position == "rope"
            else None
        )
        if config.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_heads), persistent=False)
        self.init_weights()

    # -- initialisation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2 init: N(0, init_std) for matrices and embeddings, zero biases, unit norms, and the projections
        that write into the residual stream scaled by 1/sqrt(2·n_layers) so its variance does not grow with
        depth. With a tied head this gives an initial loss of ≈ ln(vocab) on random tokens."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm | nn.LayerNorm):
                module.reset_parameters()
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for module in self.modules():
            if isinstance(module, nn.Linear) and is_residual_projection(module):
                nn.init.normal_(module.weight, mean=0.0, std=residual_std)
        if self.rope is not None:
            self.rope.reset_buffers()
        if self.config.position == "alibi":
            self.alibi_slopes.copy_(alibi_slopes(self.config.n_heads))

    # -- forward -------------------------------------------------------------------------------------------------
    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        *,
        logits_to_keep: int | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> ModelOutput:
        """idx [B, T] token ids. With a cache, they continue the cached sequence (prefill, chunk, or one token).
        `logits_to_keep=n` computes logits for the last n positions only (sampling needs just the last);
        `logits_at` [B] for one position per row, [B, 1, V] (right-padded prompts of different lengths)."""
        if idx.ndim != 2:
            raise UsageError(f"expected token ids shaped [batch, time], got shape {tuple(idx.shape)}")
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        end = start + T
        if end > self.config.max_seq_len:
            raise UsageError(
                f"{end} tokens exceed the model's context length max_seq_len={self.config.max_seq_len}",
                hint="shorten the prompt / sequence, or train a model with a larger max_seq_len",
            )
        if cache is not None:
            cache.check_fits(B, T)
        if logits_to_keep is not None and logits_at is not None:
            raise UsageError("give logits_to_keep or logits_at, not both")
        if targets is not None and (logits_to_keep is not None or logits_at is not None):
            raise UsageError(
                "logits_to_keep/logits_at cannot be combined with targets: the loss needs every position"
            )

        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[start:end]
        x = self.dropout(x)
        ctx = self._attention_context(start, end, self._compute_dtype(x))

        routed: list[RouterOutput] = []
        for i, layer in enumerate(self.layers):
            x, aux = layer(x, ctx, cache, i)
            if aux is not None:
                routed.append(aux)
        if cache is not None:
            cache.advance(T)

        x = self.norm(x)
        if logits_to_keep is not None:
            x = x[:, -logits_to_keep:]
        if logits_at is not None:
            x = x[torch.arange(B, device=x.device), logits_at].unsqueeze(1)
        if routed:
            aux_loss = torch.stack([r.aux_loss for r in routed]).mean()
            stats = {
                "frac_large": torch.stack([r.frac_large for r in routed]),
                "overflow": torch.stack([r.overflow for r in routed]),
            }
        else:
            aux_loss, stats = torch.zeros((), device=x.device), None
        if targets is None:
            return ModelOutput(None, aux_loss, stats, _logits=self.head(x))
        # Cross-entropy on flattened tokens, fused with the head when training (see alm.model.loss).
        loss, logits = linear_cross_entropy(x.reshape(-1, x.size(-1)), self.head.weight, targets.reshape(-1))
        if logits is None:
            return ModelOutput(loss, aux_loss, stats, hidden=x)
        return ModelOutput(loss, aux_loss, stats, _logits=logits.view(*x.shape[:-1], -1))

    def decode_step(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        n_keys: int,
        *,
        decode_kernel: bool = False,
    ) -> torch.Tensor:
        """Logits [B, V] for one new token per row, row b at its own position positions[b] (batched generation:
        every row of `cache` is a sequence of its own length). Reads keys [0, n_keys), so n_keys must exceed
        every row's position. Eval only, and pure tensor code (no host reads, no checks): this is the function
        `alm.sample.decoder` compiles, where norm, QKV, RoPE and the cache write fuse into few kernels.
        `decode_kernel`: attention by torch.ops.alm.decode_attention where it applies (the caller has loaded
        it: `alm.model.kernels`)."""
        x = self.tok_emb(tokens[:, None])  # [B, 1, d_model]
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)[:, None]
        query_pos, dtype = positions[:, None], self._compute_dtype(x)  # [B, T=1]
        rope = self.rope.at(query_pos, dtype) if self.rope is not None else None
        if self.config.position == "alibi":
            mask = alibi_bias_at(self.alibi_slopes, query_pos, n_keys, dtype)
        else:
            mask = causal_mask_at(query_pos, n_keys)
        alibi, device = self.config.position == "alibi", tokens.device
        kernel = decode_kernel and decode_attention_supports(self.config.head_dim, dtype, device, alibi)
        ctx, step = AttentionContext(rope, mask, False, kernel), cache.at(positions, n_keys)
        for i, layer in enumerate(self.layers):
            x, _ = layer(x, ctx, step, i)
        return self.head(self.norm(x[:, 0]))

    def _attention_context(self, start: int, end: int, dtype: torch.dtype) -> AttentionContext:
        """Positions and masking for queries at [start, end) over keys [0, end), shared by all layers."""
        rope = self.rope(start, end, dtype) if self.rope is not None else None
        if self.config.position == "alibi":  # the bias carries the causal mask too
            return AttentionContext(rope, alibi_bias(self.alibi_slopes, start, end, dtype), False)
        T = end - start
        if start == 0 or T == 1:  # square causal, or one new query that may see every cached key
            return AttentionContext(rope, None, start == 0 and T > 1)
        # Chunked prefill: SDPA's is_causal aligns top-left, but these queries sit at the bottom-right.
        query_pos = torch.arange(start, end, device=self.tok_emb.weight.device)
        return AttentionContext(rope, causal_mask_at(query_pos[None], end), False)

    @staticmethod
    def _compute_dtype(x: torch.Tensor) -> torch.dtype:
        """The dtype attention will see: autocast's if it is on, else the activations'."""
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return x.dtype

    # -- utilities -----------------------------------------------------------------------------------------------
    def new_cache(
        self,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """A preallocated KV cache for `batch_size` sequences of up to `max_len` (default max_seq_len) tokens.
        Defaults to the model's device and parameter dtype; pass the autocast dtype when decoding under it."""
        cfg = self.config
        max_len = cfg.max_seq_len if max_len is None else max_len
        if not 0 < max_len <= cfg.max_seq_len:
            raise UsageError(f"cache max_len={max_len} must be in 1..max_seq_len={cfg.max_seq_len}")
        weight = self.tok_emb.weight
        return KVCache(
            cfg.n_layers,
            batch_size,
            cfg.kv_heads,
            cfg.head_dim,
            max_len,
            device=weight.device if device is None else device,
            dtype=weight.dtype if dtype is None else dtype,
        )

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Unique parameters (a tied head counts once). Excluding embeddings drops the token table and the
        learned position table; an untied output head stays in, as it is a matmul every token pays for."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                total -= self.pos_emb.weight.numel()
        return total
