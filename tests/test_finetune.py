"""Fine-tuning the backbone with the head (``finetune.py``) on tiny causal LMs built from configs."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_rows, tiny_causal_lm
from prmkit.embed import Backbone, EmbedConfig
from prmkit.embed.tokens import StepTokens
from prmkit.errors import PrmkitError
from prmkit.train.finetune import (FinetuneConfig, StepModel, finetune, micro_batches,
                                   pooling_weights, read_finetune)
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.scoring import PRM
from prmkit.train import TrainConfig

HEAD = PRMConfig(input_dim=1, hidden_size=16, num_layers=1, num_heads=2, dropout=0.0)


@pytest.fixture(scope="module")
def llama(tmp_path_factory, minilm):
    return tiny_causal_lm("llama", tmp_path_factory.mktemp("ft") / "llama", minilm.path)


def _records() -> list[Trajectory]:
    return [Trajectory(**r) for r in make_rows(8)]


def _embed(llama, **kw) -> EmbedConfig:
    return EmbedConfig(backbone=str(llama), dtype="float32", features="hidden", **kw)


def test_pooling_weights_by_hand():
    # 1 special token before the question; question 2 tokens; steps of 3 and 1 tokens
    tokens = StepTokens(ids=tuple(range(6)), question_len=2, ends=(5, 6))
    step = pooling_weights([tokens], 1, "step", 8)[0]
    assert step[0].tolist() == pytest.approx([0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0, 0])
    assert step[1].tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    last = pooling_weights([tokens], 1, "last", 8)[0]
    assert last[0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0] and last[1, 6] == 1
    prefix = pooling_weights([tokens], 1, "prefix", 7)[0]
    assert prefix[0].tolist() == pytest.approx([1 / 6] * 6 + [0])
    assert prefix[1].tolist() == pytest.approx([1 / 7] * 7)


def test_micro_batches_by_hand():
    rows, lengths = [10, 11, 12, 13, 14], [100, 300, 200, 100, 50]
    ft = FinetuneConfig(micro_batch_tokens=400)
    # by length: 14 (50), 10 (100), 13 (100), 12 (200), 11 (300); 3 x 100 fits, 2 x 200 fits
    assert micro_batches(rows, lengths, ft) == [[14, 10, 13], [12], [11]]
    assert micro_batches(rows, lengths, FinetuneConfig(micro_batch_tokens=400, grad_accum=4)) \
        == [[14], [10, 13], [12], [11]]
    assert micro_batches(rows, lengths, FinetuneConfig(micro_batch_tokens=50)) \
        == [[14], [10], [13], [12], [11]]  # a row longer than the budget runs alone


def test_micro_batch_gradients_add_up_to_the_batch_gradient(llama):
    from prmkit.batch import pad_labels

    backbone = Backbone(_embed(llama))
    model = StepModel(backbone, PRMHead(PRMConfig(**{**HEAD.__dict__, "input_dim": 32})))
    records = _records()[:6]
    tokens = [backbone.tokenize(t.question, t.steps) for t in records]
    labels = [t.labels for t in records]
    total = sum(label is not None for ls in labels for label in ls)

    def gradients(parts):
        model.zero_grad()
        for part in parts:
            logits = model([tokens[i] for i in part])
            y, known = pad_labels(labels, part, logits.shape[1])
            per_step = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y, reduction="none")
            (per_step[known].sum() / total).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    whole = gradients([list(range(6))])
    split = gradients([[0, 3], [1], [2, 4, 5]])
    assert torch.allclose(whole, split, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pooling,layer", [("step", 1), ("last", -1), ("prefix", 2)])
def test_training_reads_the_step_vectors_the_pipeline_reads(llama, pooling, layer):
    """The loss sits exactly where scoring reads: the step-end contract, pooling and layer."""
    backbone = Backbone(_embed(llama, pooling=pooling, layer=layer))
    records = _records()[:5]
    tokens = [backbone.tokenize(t.question, t.steps) for t in records]
    expected, _ = backbone.embed(tokens)
    model = StepModel(backbone, PRMHead(HEAD))
    with torch.no_grad():
        features, step_mask = model.step_features(tokens)
    for b, want in enumerate(expected):
        got = features[b, :len(want)].numpy()
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
        assert step_mask[b].sum() == len(want)


def _train_loss(prm: PRM, records) -> float:
    probs = prm.score_batch(records)
    losses = [-np.log(p if y else 1 - p) for t, ps in zip(records, probs)
              for p, y in zip(ps, t.labels) if y is not None]
    return float(np.mean(losses))


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_finetuning_lowers_the_loss_changes_the_backbone_and_reloads_identically(
        tmp_path, llama, mode):
    records = _records()
    before = load_file(llama / "model.safetensors")
    backbone = Backbone(_embed(llama, layer=-1))
    config = TrainConfig(epochs=6, batch_size=4, lr=3e-3, val_fraction=0.25, patience=10)
    ft = FinetuneConfig(mode=mode, backbone_lr=3e-3, lora_rank=4)
    untrained = PRM(PRMHead(PRMConfig(**{**HEAD.__dict__, "input_dim": 32})), backbone)
    untrained.head.set_feature_stats(torch.zeros(32), torch.ones(32))
    summary, prm = finetune(records, backbone, HEAD, config, ft, tmp_path / mode, progress=False)
    losses = [h["val_loss"] for h in summary["history"]]
    assert min(losses) < losses[0]
    assert summary["optimizer_steps"] == 6 * 5  # 18 training trajectories in batches of 4
    trained = dict(prm.backbone.model.named_parameters())
    if mode == "lora":
        # only adapters train: every base weight equals the file's, the adapters moved
        base = {n.replace(".base_layer", ""): p for n, p in trained.items()}
        assert all(torch.equal(base[name].detach(), value) for name, value in before.items())
        lora_b = [p for n, p in trained.items() if "lora_B" in n]
        assert lora_b and all(p.abs().max() > 0 for p in lora_b)  # B starts at zero
        assert summary["trainable_backbone_parameters"] == sum(
            p.numel() for n, p in trained.items() if "lora_" in n)
        files = sorted(p.name for p in (tmp_path / mode / "backbone").iterdir())
        assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    else:
        changed = [n for n, v in before.items()
                   if not torch.equal(trained[n].detach(), v)]
        assert len(changed) > len(before) // 2
    # the loss on the training data fell below the untrained model's
    assert _train_loss(prm, records) < _train_loss(untrained, records)
    # save and reload: the same scores, bit for bit
    reloaded = PRM.from_pretrained(tmp_path / mode)
    assert reloaded.score_batch(records) == prm.score_batch(records)
    assert read_finetune(tmp_path / mode).mode == mode
    assert reloaded.head.calibration.temperature == prm.head.calibration.temperature


def test_a_finetuned_backbone_never_shares_the_frozen_cache(tmp_path, llama):
    from prmkit.embed import EmbeddingCache, embed_trajectories

    records = _records()[:6]
    backbone = Backbone(_embed(llama))
    frozen_spec = dict(backbone.fingerprint)
    config = TrainConfig(epochs=1, batch_size=4, val_fraction=0.0, calibrate=False)
    finetune(records, backbone, HEAD, config, FinetuneConfig(), tmp_path / "m", progress=False)
    prm = PRM.from_pretrained(tmp_path / "m", cache_dir=tmp_path / "cache")
    assert "adapter_sha256" in prm.backbone.fingerprint
    # the backbone object that was trained no longer claims the frozen fingerprint either
    assert backbone.fingerprint == prm.backbone.fingerprint
    assert {k: v for k, v in prm.backbone.fingerprint.items() if k != "adapter_sha256"} \
        == frozen_spec
    frozen_cache = EmbeddingCache(tmp_path / "cache", frozen_spec)
    embed_trajectories(records, Backbone(_embed(llama)), frozen_cache, progress=False)
    _, report = embed_trajectories(records, prm.backbone, prm.cache, progress=False)
    assert report["cached"] == 0 and report["computed"] == len(records)


def test_lora_adapts_only_the_layers_below_the_one_read(tmp_path, llama):
    backbone = Backbone(_embed(llama, layer=1))  # hidden_states[1]: the output of layer 0
    config = TrainConfig(epochs=1, batch_size=8, val_fraction=0.0, calibrate=False)
    _, prm = finetune(_records()[:8], backbone, HEAD, config,
                      FinetuneConfig(lora_targets=("q_proj", "v_proj")), tmp_path / "m",
                      progress=False)
    adapted = sorted({n.split(".lora_")[0] for n, _ in prm.backbone.model.named_parameters()
                      if "lora_A" in n})
    assert adapted == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


def test_what_cannot_be_finetuned_is_refused(tmp_path, llama, minilm):
    records = _records()[:3]
    config = TrainConfig(epochs=1)
    with pytest.raises(PrmkitError, match="features hidden"):
        finetune(records, Backbone(EmbedConfig(backbone=str(llama), features="both")), HEAD,
                 config, FinetuneConfig(), tmp_path / "a", progress=False)
    with pytest.raises(PrmkitError, match="causal LM"):
        finetune(records, Backbone(EmbedConfig(backbone="minilm")), HEAD, config,
                 FinetuneConfig(), tmp_path / "b", progress=False)
    with pytest.raises(PrmkitError, match="frozen path"):
        finetune(records, Backbone(_embed(llama)), HEAD, TrainConfig(target="outcome"),
                 FinetuneConfig(), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="finetune mode"):
        FinetuneConfig(mode="qlora")


def test_cli_finetunes_and_scores(tmp_path, llama, small_jsonl, capsys):
    from prmkit.cli import main

    out = tmp_path / "m"
    assert main(["train", str(small_jsonl), "--out", str(out), "--backbone", str(llama),
                 "--dtype", "float32", "--finetune", "lora", "--lora-rank", "4", "--epochs", "1",
                 "--hidden-size", "16", "--num-layers", "1", "--num-heads", "2",
                 "--no-progress"]) == 0
    assert "fine-tuned lora" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["finetune"]["mode"] == "lora" and saved["finetune"]["lora_rank"] == 4
    assert main(["score", str(out), str(small_jsonl), "--no-cache", "--json",
                 "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 24
    assert main(["train", str(small_jsonl), "--out", str(tmp_path / "x"), "--backbone",
                 "minilm", "--finetune", "lora", "--no-progress"]) == 2
    assert "causal LM" in capsys.readouterr().err


# --- export: the token-classification form --------------------------------------------------

def _linear_last(llama, tmp_path, finetune_mode: str | None):
    """A PRM of the exportable shape: linear head, last token, final layer; trained briefly."""
    records = _records()
    backbone = Backbone(_embed(llama, pooling="last", layer=-1))
    head = PRMConfig(input_dim=1, head_type="linear")
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-2, val_fraction=0.25)
    out = tmp_path / (finetune_mode or "frozen")
    if finetune_mode:
        finetune(records, backbone, head, config, FinetuneConfig(mode=finetune_mode, lora_rank=4,
                 backbone_lr=1e-2), out, progress=False)
    else:
        from prmkit.workflows import train_prm

        train_prm(records, out, backbone.config, {"head_type": "linear"}, config,
                  cache_dir=False, progress=False)
    return records, out


@pytest.mark.parametrize("finetune_mode", [None, "lora", "full"])
def test_exported_token_classifier_scores_equal_prmkit(tmp_path, llama, finetune_mode):
    from transformers import AutoModelForTokenClassification

    from prmkit.export import export_token_classification
    from prmkit.scoring import load_scorer, score_features

    records, out = _linear_last(llama, tmp_path, finetune_mode)
    export_token_classification(out, tmp_path / "hf")
    prm = PRM.from_pretrained(out)
    # prmkit's scores from float32 step vectors (the pipeline stores float16: compared below)
    tokens = [prm.backbone.tokenize(t.question, t.steps) for t in records]
    vectors, _ = prm.backbone.embed(tokens)
    want = score_features(prm.head, vectors)
    # the exported model, loaded by transformers alone, read at each step's last token
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    for t, expected in zip(tokens, want):
        with torch.no_grad():
            logits = model(torch.tensor([list(prm.backbone.prefix_ids) + list(t.ids)])).logits
        ends = [len(prm.backbone.prefix_ids) + e - 1 for e in t.ends]
        got = torch.sigmoid(logits[0, ends, 0]).tolist()
        assert np.abs(np.array(got) - expected).max() < 1e-5
    # through prmkit's loader (the layout read from the config), beside prmkit's own scores
    exported = load_scorer(f"token-classification:{tmp_path / 'hf'}")
    assert exported.threshold == prm.threshold
    got = exported.score_batch(records)
    assert max(abs(a - b) for x, y in zip(got, want) for a, b in zip(x, y)) < 1e-5
    assert max(abs(a - b) for x, y in zip(got, prm.score_batch(records))
               for a, b in zip(x, y)) < 1e-2  # float16 step vectors in the pipeline


def test_what_is_not_a_token_classifier_is_not_exported(tmp_path, llama, capsys):
    from prmkit.cli import main
    from prmkit.workflows import train_prm

    backbone = Backbone(_embed(llama, pooling="step", layer=1))
    train_prm(_records(), tmp_path / "m", backbone.config, {"hidden_size": 16, "num_layers": 1,
              "num_heads": 2}, TrainConfig(epochs=1), cache_dir=False, progress=False)
    assert main(["export", str(tmp_path / "m"), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "--pooling last" in err and "--layer -1" in err and "--head linear" in err
    assert not (tmp_path / "hf").exists()


# --- many processes ---------------------------------------------------------------------------

def test_two_processes_finetune_the_weights_of_one(tmp_path, llama, small_jsonl, capsys):
    """torchrun with LoRA: each rank a share of every batch (batches of 5 over 21 training
    solutions: odd splits, and a last batch of one that leaves rank 1 without rows)."""
    from prmkit.cli import main
    from test_distributed import finish, key_bias_free_difference, torchrun

    args = ["train", str(small_jsonl), "--backbone", str(llama), "--dtype", "float32",
            "--finetune", "lora", "--lora-rank", "4", "--epochs", "2", "--batch-size", "5",
            "--hidden-size", "16", "--num-layers", "1", "--num-heads", "2", "--dropout", "0",
            "--threads", "1", "--lr", "3e-3", "--backbone-lr", "3e-3", "--device", "cpu",
            "--no-progress", "--json"]
    two = torchrun(["-m", "prmkit", *args, "--out", str(tmp_path / "two")], tmp_path)
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    s_one, s_two = json.loads(capsys.readouterr().out), json.loads(finish(two, timeout=300))
    assert s_two["optimizer_steps"] == s_one["optimizer_steps"] == 2 * 5
    assert key_bias_free_difference(tmp_path / "one", tmp_path / "two") < 1e-5
    one = load_file(tmp_path / "one" / "backbone" / "adapter_model.safetensors")
    two = load_file(tmp_path / "two" / "backbone" / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
