"""Scaled dot-product attention that hands grouped key/value heads to torch as they are.

transformers' ``"sdpa"`` attention copies each key/value head to every query head it serves
(``repeat_kv``) whenever an attention mask is given, which is always the case for padded
batches. On a CPU those copies are a large part of a forward pass, and most of it when short
continuations attend to long pasts (``prefix.py``): SmolLM2 serves three query heads from each
key/value head. torch's ``scaled_dot_product_attention(enable_gqa=True)`` reads the grouped heads
directly; the result is the same attention.

``use_grouped_sdpa(model)`` switches a loaded model that uses ``"sdpa"`` to this function through
transformers' attention interface (the masks stay ``sdpa``'s).
"""

from __future__ import annotations

import torch

NAME = "prmkit_grouped_sdpa"


def grouped_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                 value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
                 scaling: float | None = None, is_causal: bool | None = None,
                 **kwargs) -> tuple[torch.Tensor, None]:
    """Shape: query (B, heads, L, d); key, value (B, kv heads, P + L, d); attention_mask
    (B, 1, L, P + L) bool or None -> ((B, L, heads, d), None)."""
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    # without a mask, only a pass with no past may use torch's causal flag (upper-left aligned)
    is_causal = query.shape[2] > 1 and attention_mask is None and is_causal
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=is_causal, enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def use_grouped_sdpa(model) -> None:
    """Switch ``model`` from transformers' ``"sdpa"`` attention to ``grouped_sdpa``; a model
    using another implementation is left as it is."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if model.config._attn_implementation != "sdpa":
        return
    AttentionInterface.register(NAME, grouped_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
