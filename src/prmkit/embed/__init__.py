"""Step embeddings: the step-end contract, backbones, and the cache."""

from prmkit.embed.backbone import Backbone, EmbedConfig
from prmkit.embed.rows import EmbedStats
from prmkit.embed.sources import BACKBONES
from prmkit.embed.cache import EmbeddingCache, default_cache_dir, open_cache
from prmkit.embed.pipeline import describe, embed_trajectories
from prmkit.embed.tokens import StepTokens, tokenize_steps

__all__ = ["BACKBONES", "Backbone", "EmbedConfig", "EmbedStats", "EmbeddingCache",
           "StepTokens", "default_cache_dir", "describe", "embed_trajectories", "open_cache",
           "tokenize_steps"]
