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


# --- untrusted model folders ---------------------------------------------------------------------

import json  # noqa: E402

from safetensors.torch import save_file  # noqa: E402


def saved(tmp_path):
    small().save_pretrained(tmp_path)
    return json.loads((tmp_path / "config.json").read_text())


def set_key(*path, value):
    def change(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def drop_key(*path):
    def change(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


BAD_CONFIGS = {
    "unknown head key": (set_key("head", "hidden", value=3), "head.hidden: unknown key"),
    "unknown top key": (set_key("extra", value=1), "config.json.extra: unknown key"),
    "causal as a string": (set_key("head", "causal", value="false"),
                           "head.causal: expected a bool, got str 'false'"),
    "hidden size as a float": (set_key("head", "hidden_size", value=16.5),
                               "head.hidden_size: expected an int"),
    "layers as a bool": (set_key("head", "num_layers", value=True),
                         "head.num_layers: expected an int, got bool"),
    "dropout as a string": (set_key("head", "dropout", value="0.1"),
                            "head.dropout: expected a number"),
    "negative layers": (set_key("head", "num_layers", value=-1), "num_layers >= 0"),
    "huge width": (set_key("head", "hidden_size", value=16384),
                   "input_proj.weight has shape (16, 12), the config gives (16384, 12)"),
    "100000 layers": (set_key("head", "num_layers", value=100000),
                      "holds 2 encoder layers, the config gives 100000"),
    "other max steps": (set_key("head", "max_steps", value=10**6),
                        "step_position.weight has shape (16, 16)"),
    "missing input_dim": (drop_key("head", "input_dim"), "head.input_dim: missing"),
    "unknown target": (set_key("head", "target", value="vibes"), "target must be one of"),
    "embedding not an object": (set_key("embedding", value=[1]),
                                "head and embedding must be objects"),
    "unknown embedding key": (set_key("embedding", "backbone", value="x"),
                              "embedding.backbone: unknown key"),
    "bad embed config type": (set_key("embedding", "config", value={"layer": "last"}),
                              "embedding.config.layer: expected an int or a list of ints or "
                              "null"),
    "unknown embed config key": (set_key("embedding", "config", value={"shell": "rm"}),
                                 "embedding.config.shell: unknown key"),
    "training not an object": (set_key("training", value=[1]),
                               "training must be an object or null"),
    "other model type": (set_key("model_type", value="bert"), "not a prmkit head config"),
    "newer format": (set_key("format", value=99), "config format 99"),
}


@pytest.mark.parametrize("kind", BAD_CONFIGS)
def test_a_bad_config_is_a_clear_error_before_anything_is_built(tmp_path, kind):
    change, words = BAD_CONFIGS[kind]
    config = saved(tmp_path)
    change(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PrmkitError) as info:
        PRMHead.from_pretrained(tmp_path)
    assert words in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("{", "invalid JSON"), ('{"a": NaN}', "number NaN is not allowed"),
    ('{"head": 1, "head": 2}', "duplicate key"), ("[" * 100_000, "nested more than"),
    (b"\xff\xfe", "not UTF-8")])
def test_an_unreadable_config_is_a_clear_error(tmp_path, text, words):
    saved(tmp_path)
    (tmp_path / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(PrmkitError, match=words):
        PRMHead.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(b"not safetensors at all"), "not a readable safetensors"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable safetensors"),
    (lambda p: save_file({"x": torch.zeros(2)}, p), "input_proj.weight has shape None"),
])
def test_bad_weights_are_a_clear_error(tmp_path, damage, words):
    saved(tmp_path)
    damage(tmp_path / "model.safetensors")
    with pytest.raises(PrmkitError, match=words):
        PRMHead.from_pretrained(tmp_path)


def test_the_training_section_is_checked_field_by_field(tmp_path):
    from prmkit.train import TrainConfig, read_training

    config = saved(tmp_path)
    assert read_training(tmp_path) is None  # saved without training settings
    config["training"] = {"epochs": "ten"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PrmkitError, match="training.epochs: expected an int"):
        read_training(tmp_path)
    config["training"] = {"epochs": 3}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_training(tmp_path) == TrainConfig(epochs=3)


def test_nan_weights_are_refused(tmp_path):
    model = small()
    with torch.no_grad():
        model.head[0].weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path)
    with pytest.raises(PrmkitError, match="head.0.weight holds NaN"):
        PRMHead.from_pretrained(tmp_path)


def test_a_folder_written_by_the_first_format_still_loads(tmp_path):
    from dataclasses import asdict

    model = small()
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"prmkit_head": asdict(model.config)}))
    loaded = PRMHead.from_pretrained(tmp_path, backbone_fingerprint=FINGERPRINT)
    x, mask = torch.randn(2, 4, 12), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model(x, mask), loaded(x, mask))


def test_config_has_a_model_type_and_one_section_per_stage(tmp_path):
    config = saved(tmp_path)
    assert config["model_type"] == "prmkit" and config["format"] == 2
    assert set(config) == {"model_type", "format", "prmkit_version", "head", "embedding",
                           "training", "calibration"}
    assert config["embedding"]["fingerprint"] == FINGERPRINT
