"""``prmkit export MODEL --to token-classification``: a prmkit PRM as a transformers model.

A token-classification PRM (what TRL's ``PRMTrainer`` trained, and the shape several published
PRMs take) is a language model with a linear layer on each token's final state; a step's score is
the output at the step's last token. A prmkit PRM has that shape exactly when:

* its backbone is a causal LM read in context (one pass per solution, ``features="hidden"``),
* the step vector is the state at the step's last token (``pooling="last"``) of the final,
  normed layer (``layer=-1``: what ``last_hidden_state`` holds), and
* its head is the per-step linear head (``--head linear``; one member, no ensemble).

Then the head folds into the classifier: with standardization (x - mean) / std and the saved
temperature T, ``logit = (w / (std T)) . x + (b - w . mean / std) / T``. A LoRA adapter is merged
into the base weights. Any other model is refused with the reason, never exported as something
that scores differently.

The exported folder reads the steps in prmkit's layout, which is not TRL's: the special tokens
the tokenizer puts first, then ``question + separator`` and each ``step + separator``, every
piece tokenized on its own (the step-end contract, ``embed/tokens.py``). ``config.json`` records
it under ``prmkit_export``; ``load_scorer`` (``TokenClassificationScorer``) reads it and scores
with it, and so can anyone who builds the ids that way and reads ``sigmoid(logits[..., 0])`` at
each step's last token.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from prmkit.errors import PrmkitError

TARGETS = ("token-classification",)
EXPORT_KEY = "prmkit_export"


def why_not_exportable(prm) -> str | None:
    """The reason ``prm`` has no token-classification form, or None when it has one."""
    backbone, config = prm.backbone, prm.head.config
    embed = backbone.config
    reasons = []
    if not backbone.single_pass or embed.context != "prefix":
        reasons.append("its backbone is not a causal LM read in context (one pass per solution)")
    if embed.features != "hidden":
        reasons.append(f"it reads features {embed.features!r}; a classifier reads hidden states "
                       "only (--features hidden)")
    if embed.pooling != "last":
        reasons.append(f"its steps are pooled by {embed.pooling!r}; a token classifier reads the "
                       "step's last token (--pooling last)")
    if backbone.read_layers and backbone.read_layers != (backbone.num_layers,):
        reasons.append(f"it reads layer {embed.layer}; a token classifier reads the final, "
                       "normed layer (--layer -1)")
    if config.head_type != "linear" or config.ensemble > 1:
        reasons.append("its head is not one per-step linear layer (train with --head linear)")
    if backbone.prefix_ids and backbone.suffix_ids:
        reasons.append("its tokenizer wraps the input in special tokens at both ends")
    return "; ".join(reasons) or None


def export_token_classification(model_dir: str | os.PathLike, out: str | os.PathLike,
                                overwrite: bool = False) -> dict:
    """Write ``model_dir`` (a prmkit model) as an ``AutoModelForTokenClassification`` folder
    with one label, whose ``sigmoid(logit)`` at each step's last token is the PRM's calibrated
    step probability. Returns what was written."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    from prmkit._io import check_output
    from prmkit.scoring import PRM

    out = check_output(out, [], overwrite, folder=True)
    prm = PRM.from_pretrained(model_dir)
    reason = why_not_exportable(prm)
    if reason:
        raise PrmkitError(f"{model_dir} cannot be exported as a token-classification model: "
                          f"{reason}")
    backbone, head = prm.backbone, prm.head
    causal = _plain_model(backbone)
    config = AutoConfig.from_pretrained(backbone.path)
    config.num_labels = 1
    config.architectures = None
    config.classifier_dropout = 0.0
    config.token_classification_bias = True
    setattr(config, EXPORT_KEY, {
        "layout": "prmkit", "separator": backbone.config.separator,
        "prefix_ids": list(backbone.prefix_ids),
        "threshold": head.calibration.threshold,
        "source": str(Path(model_dir)),
        "how": "ids = prefix_ids + ids(question + separator) + ids(step + separator) for each "
               "step, each piece tokenized alone; step t's probability is "
               "sigmoid(logits[0, end_t - 1, 0]) at its piece's last token"})
    model = AutoModelForTokenClassification.from_config(config, dtype=torch.float32)
    base = getattr(model, model.base_model_prefix)
    missing, unexpected = base.load_state_dict(causal.base_model.state_dict(), strict=False)
    if missing or unexpected:
        raise PrmkitError(f"the backbone's weights do not fit {type(model).__name__} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    classifier = _classifier(model)
    with torch.no_grad():
        w = head.head.weight[0].double()  # (H,)
        b = head.head.bias[0].double()
        std, mean = head.feature_std.double(), head.feature_mean.double()
        t = float(head.calibration.temperature)
        classifier.weight.copy_((w / std / t)[None].float())
        classifier.bias.copy_(((b - (w * mean / std).sum()) / t)[None].float())
    model.to(torch.float32 if backbone.config.dtype == "float32" else torch.bfloat16)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    backbone.tokenizer.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"out": str(out), "architecture": type(model).__name__,
            "dtype": backbone.config.dtype, "threshold": head.calibration.threshold}


def _plain_model(backbone):
    """The backbone's causal LM with any LoRA adapter merged into its weights (in float32, on a
    fresh copy: the backbone keeps its unmerged layers)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(backbone.path, dtype=torch.float32)
    if backbone.adapter is not None:
        from peft import PeftModel

        from prmkit.embed.backbone import quiet_peft

        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(backbone.adapter)).merge_and_unload()
    return model.eval()


def _classifier(model) -> torch.nn.Linear:
    """The token classifier's output layer (``score`` or ``classifier``, by architecture)."""
    for _, module in model.named_children():
        if isinstance(module, torch.nn.Linear) and module.out_features == 1:
            return module
    raise PrmkitError(f"cannot find the classifier layer of {type(model).__name__}")
