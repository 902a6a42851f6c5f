import pytest
import torch

from prmkit.errors import PrmkitError
from prmkit.model import PRMConfig, PRMHead

FINGERPRINT = {"weights_sha256": "abc", "pooling": "step", "layer": -1}


def small(causal=True, **kw) -> PRMHead:
    torch.manual_seed(0)
    config = PRMConfig(input_dim=12, hidden_size=16, num_layers=2, num_heads=2, max_steps=16,
                       causal=causal, backbone_fingerprint=FINGERPRINT, **kw)
    return PRMHead(config).eval()


def test_spec_defaults():
    c = PRMConfig(input_dim=384)
    assert (c.hidden_size, c.num_layers, c.num_heads, c.dropout, c.max_steps, c.causal) == \
        (512, 4, 8, 0.1, 512, True)


def test_causal_invariance_later_steps_do_not_move_earlier_scores():
    model = small()
    x = torch.randn(1, 8, 12)
    mask = torch.ones(1, 8, dtype=torch.bool)
    edited = x.clone()
    edited[0, 5] = torch.randn(12) * 10  # change step 5
    with torch.no_grad():
        a, b = model(x, mask), model(edited, mask)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)  # steps 0-4 unchanged
    assert not torch.allclose(a[0, 5:], b[0, 5:], atol=1e-3)
    # and a prefix scored alone equals the same steps scored inside the longer solution
    with torch.no_grad():
        prefix = model(x[:, :5], mask[:, :5])
    assert torch.allclose(prefix[0], a[0, :5], atol=1e-6)


def test_bidirectional_option_lets_later_steps_in():
    model = small(causal=False)
    x = torch.randn(1, 8, 12)
    mask = torch.ones(1, 8, dtype=torch.bool)
    edited = x.clone()
    edited[0, 5] += 5.0
    with torch.no_grad():
        assert not torch.allclose(model(x, mask)[0, :5], model(edited, mask)[0, :5], atol=1e-4)


def test_padding_does_not_change_real_steps():
    model = small()
    x = torch.randn(2, 6, 12)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    with torch.no_grad():
        batched = model(x, mask)
        alone = model(x[1:, :3], mask[1:, :3])
    assert torch.allclose(batched[1, :3], alone[0], atol=1e-5)
    assert torch.isfinite(batched).all()


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    model = small()
    model.set_feature_stats(torch.arange(12.0), torch.full((12,), 2.0))
    model.save_pretrained(tmp_path)
    loaded = PRMHead.from_pretrained(tmp_path, backbone_fingerprint=FINGERPRINT)
    x = torch.randn(3, 5, 12)
    mask = torch.ones(3, 5, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model(x, mask), loaded(x, mask))
    assert torch.equal(loaded.feature_mean, torch.arange(12.0))


def test_loading_with_another_backbone_is_refused(tmp_path):
    small().save_pretrained(tmp_path)
    other = dict(FINGERPRINT, weights_sha256="def")
    with pytest.raises(PrmkitError, match="weights_sha256: trained with 'abc', given 'def'"):
        PRMHead.from_pretrained(tmp_path, backbone_fingerprint=other)


def test_too_many_steps_is_a_clear_error():
    model = small()
    with pytest.raises(PrmkitError, match="17 steps; this head takes at most max_steps=16"):
        model(torch.randn(1, 17, 12), torch.ones(1, 17, dtype=torch.bool))


def test_config_validation():
    with pytest.raises(ValueError, match="not divisible"):
        PRMConfig(input_dim=4, hidden_size=10, num_heads=3)
