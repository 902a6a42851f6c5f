"""Shared fixtures: the bundled MiniLM, tiny causal LMs built from configs, small data files."""

from __future__ import annotations

import json
import random

import pytest


@pytest.fixture(scope="session")
def minilm():
    from prmkit.embed import Backbone, EmbedConfig

    return Backbone(EmbedConfig(backbone="minilm"))


def make_rows(n_questions: int = 8, seed: int = 0) -> list[dict]:
    """Small arithmetic solutions: one right, one wrong at step 0, one wrong at step 1."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_questions):
        a, b, c = rng.randint(3, 9), rng.randint(2, 9), rng.randint(2, 5)
        q = f"Item {i}: there are {a} boxes with {b} pens each and {c} pens are lost. How many remain?"
        good = [f"{a} * {b} = {a * b} pens.", f"{a * b} - {c} = {a * b - c}.", f"The answer is {a * b - c}."]
        bad = [f"{a} + {b} = {a + b} pens.", f"{a + b} - {c} = {a + b - c}.", f"The answer is {a + b - c}."]
        slip = [good[0], f"{a * b} - {c} = {a * b - c + 3}.", f"The answer is {a * b - c + 3}."]
        rows += [{"question": q, "steps": good, "labels": [1, 1, 1], "outcome": True},
                 {"question": q, "steps": bad, "labels": [0, None, None], "outcome": False},
                 {"question": q, "steps": slip, "labels": [1, 0, None], "outcome": False}]
    return rows


@pytest.fixture
def small_jsonl(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows()))
    return path


def tiny_causal_lm(model_type: str, folder, tokenizer_source):
    """A randomly initialised causal LM of the given family, saved with a real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=256, n_embd=32, n_layer=2, n_head=4,
                                  n_positions=256)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
