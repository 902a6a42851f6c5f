import math

import numpy as np
import pytest
import torch

from prmkit.embed import Backbone, EmbedConfig
from prmkit.embed.surprise import NUM_SURPRISE, SURPRISE_NAMES, step_surprise, token_logprobs
from prmkit.errors import PrmkitError
from prmkit.records import Trajectory

from conftest import tiny_causal_lm


def test_step_surprise_by_hand():
    # three tokens with log-probs -1, -3, -2
    f = dict(zip(SURPRISE_NAMES, step_surprise(np.array([-1.0, -3.0, -2.0]))))
    assert f["mean_logprob"] == pytest.approx(-2.0)
    assert f["min_logprob"] == pytest.approx(-3.0)
    assert f["log_tokens"] == pytest.approx(math.log(3))
    # right-aligned last 8: five zeros, then -1, -3, -2
    assert [f[f"logprob[-{k}]"] for k in range(8, 0, -1)] == [0, 0, 0, 0, 0, -1, -3, -2]
    assert f["std_logprob"] == pytest.approx(math.sqrt(2 / 3))  # deviations 1, -1, 0
    assert f["low20_logprob"] == pytest.approx(-3.0)  # ceil(0.2 * 3) = 1 lowest token
    assert f["first_logprob"] == pytest.approx(-1.0)
    assert len(SURPRISE_NAMES) == NUM_SURPRISE == 14
    # ten tokens: the last 8 fill the window; the lowest 2 (20%) are -10 and -9
    ten = -np.arange(1.0, 11.0)
    f = dict(zip(SURPRISE_NAMES, step_surprise(ten)))
    assert [f[f"logprob[-{k}]"] for k in range(8, 0, -1)] == list(ten[2:])
    assert f["low20_logprob"] == pytest.approx(-9.5)
    # no scored token: zeros, and log(1) for the length
    assert step_surprise(np.zeros(0)).tolist() == [0.0] * NUM_SURPRISE


def test_token_logprobs_by_hand():
    # a "head" that returns the states as logits: a vocabulary of 3
    head = torch.nn.Identity()
    logits = torch.tensor([[0.0, math.log(2), math.log(5)],   # probs 1/8, 2/8, 5/8
                           [0.0, 0.0, 0.0]])                  # uniform
    lp = token_logprobs(head, logits, torch.tensor([1, 0]))
    assert lp.tolist() == pytest.approx([math.log(2 / 8), math.log(1 / 3)], abs=1e-6)


@pytest.mark.parametrize("share", [True, False])
def test_surprise_equals_log_probs_from_the_model_logits(tmp_path, minilm, share):
    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    backbone = Backbone(EmbedConfig(backbone=str(folder), features="surprise",
                                    share_prefixes=share))
    q = "A shop sells 3 boxes of 12 pens. How many pens?"
    data = [Trajectory(q, ["3 * 12 = 36 pens.", "The answer is 36."]),
            Trajectory(q, ["3 * 12 = 36 pens.", "So the answer is 36 pens in all."])]
    tokens = [backbone.tokenize(t.question, t.steps) for t in data]
    got, stats = backbone.embed(tokens)
    assert (stats.real_tokens < stats.input_tokens) == share
    for tok, features in zip(tokens, got):
        ids = backbone.prefix_ids + list(tok.ids)
        with torch.no_grad():
            logits = backbone.model(input_ids=torch.tensor([ids])).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        pre = len(backbone.prefix_ids)
        for t, (s, e) in enumerate(zip(tok.starts, tok.ends)):
            s, e = s + pre, e + pre
            # token p is predicted at p - 1
            lp = np.array([logp[p - 1, ids[p]].item() for p in range(s, e)])
            f = dict(zip(SURPRISE_NAMES, features[t]))
            assert f["mean_logprob"] == pytest.approx(lp.mean(), abs=1e-4)
            assert f["min_logprob"] == pytest.approx(lp.min(), abs=1e-4)
            assert f["log_tokens"] == pytest.approx(math.log(e - s), abs=1e-4)
            assert f["logprob[-1]"] == pytest.approx(lp[-1], abs=1e-4)
            assert f["first_logprob"] == pytest.approx(lp[0], abs=1e-4)
            assert f["std_logprob"] == pytest.approx(lp.std(), abs=1e-4)


def test_surprise_needs_a_causal_lm(minilm):
    with pytest.raises(PrmkitError, match="need a causal LM with an LM head"):
        Backbone(EmbedConfig(backbone="minilm", features="surprise"))
