"""The PRM head: step embeddings in, one logit per step out.

Design (the reference spec): standardize features → input projection → + learned step-position
embedding → TransformerEncoder over the steps with a padding mask → MLP → one logit per step.

Attention over steps is **causal by default**: the spec defines V(step_t | question, steps <= t),
so a step's score must not move when later steps are added or edited (and beam search can score a
partial solution). ``causal=False`` gives the spec's bidirectional attention, to compare against.

A trajectory longer than ``max_steps`` is refused with a clear error rather than silently cut:
the position embedding has no row for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prmkit._io import atomic_save, write_json
from prmkit.calibrate import Calibration
from prmkit.errors import PrmkitError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TARGETS = ("step", "outcome")
HEAD_TYPES = ("transformer", "linear")


@dataclass
class PRMConfig:
    """The head's shape and what it was trained for. Defaults are the reference spec's."""

    input_dim: int
    hidden_size: int = 512
    num_layers: int = 4
    num_heads: int = 8
    dropout: float = 0.1
    max_steps: int = 512
    causal: bool = True
    target: str = "step"  # "step": a PRM; "outcome": an ORM (one label on the last step)
    embed: dict = field(default_factory=dict)  # the EmbedConfig used, as a dict
    backbone_fingerprint: dict = field(default_factory=dict)  # Backbone.fingerprint
    # where a backbone given as a local path was (absolute): the model loads from any folder
    backbone_path: str | None = None
    # "transformer": the spec's head; "linear": per-step logistic regression on the same
    # standardized features, the baseline head that shows where the transformer earns its keep
    head_type: str = "transformer"
    # multi-task training heads (transformer only): the outcome from the last step's state, and
    # the next step's projected features from each state; unused when scoring
    aux_outcome: bool = False
    aux_next_step: bool = False
    # K > 1: K heads of this shape trained with different seeds, saved as one model
    # (``EnsembleHead``): the mean of their probabilities, their spread as uncertainty
    ensemble: int = 1

    def __post_init__(self):
        if self.input_dim < 1 or self.hidden_size < 1 or self.num_layers < 0 \
                or self.num_heads < 1:
            raise ValueError("input_dim, hidden_size and num_heads must be positive, "
                             "num_layers >= 0")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_steps < 1:
            raise ValueError("max_steps must be positive")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        if self.head_type == "linear" and (self.aux_outcome or self.aux_next_step):
            raise ValueError("multi-task heads need the transformer head")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")


class PRMHead(nn.Module):
    """Maps step embeddings to per-step logits.

    Shape:
        features: (B, T, D) float; step_mask: (B, T) bool, True on real steps, each row with at
        least one real step (an all-padding row would make attention produce NaN).
        returns logits: (B, T); values at padded positions are meaningless.
    """

    def __init__(self, config: PRMConfig):
        super().__init__()
        self.config = config
        d, h = config.input_dim, config.hidden_size
        # Standardization statistics live with the weights, so a saved head is self-contained.
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        # logits are divided by its temperature before any probability is read (calibrate.py)
        self.calibration = Calibration()
        if config.head_type == "linear":
            self.head = nn.Linear(d, 1)
            return
        self.input_proj = nn.Linear(d, h)
        self.step_position = nn.Embedding(config.max_steps, h)
        layer = nn.TransformerEncoderLayer(h, config.num_heads, dim_feedforward=4 * h,
                                           dropout=config.dropout, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(h, 1))
        if config.aux_outcome:
            self.outcome_head = nn.Linear(h, 1)
        if config.aux_next_step:
            self.next_step_head = nn.Linear(h, h)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def forward(self, features: torch.Tensor, step_mask: torch.Tensor,
                return_states: bool = False):
        """Step logits (B, T); with ``return_states`` also the encoder's states (B, T, H) and
        the projected inputs (B, T, H) that multi-task losses read (transformer head only)."""
        batch, steps, _ = features.shape
        if steps > self.config.max_steps:
            raise PrmkitError(f"a trajectory has {steps} steps; this head takes at most "
                              f"max_steps={self.config.max_steps} (split it or train with a "
                              "larger max_steps, --max-steps)")
        x = (features.float() - self.feature_mean) / self.feature_std  # (B, T, D)
        if self.config.head_type == "linear":
            return self.head(x).squeeze(-1)  # (B, T)
        projected = self.input_proj(x)  # (B, T, H)
        x = projected + self.step_position.weight[:steps]
        attn_mask = None
        if self.config.causal:
            attn_mask = torch.ones(steps, steps, dtype=torch.bool,
                                   device=features.device).triu(1)  # True = may not attend
        x = self.encoder(x, mask=attn_mask, src_key_padding_mask=~step_mask)  # (B, T, H)
        logits = self.head(x).squeeze(-1)  # (B, T)
        return (logits, x, projected) if return_states else logits

    # --- persistence -------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, training: dict | None = None,
                        finetune: dict | None = None) -> None:
        """Write ``model.safetensors`` then ``config.json`` (the config marks a complete save):
        one section per stage (``CONFIG_FORMAT``), ``training`` the training settings,
        ``finetune`` how the backbone saved beside the head was fine-tuned (``train/finetune.py``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        atomic_save(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp))
        write_json(directory / CONFIG_NAME,
                   config_sections(self.config, training, self.calibration, finetune))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        backbone_fingerprint: dict | None = None) -> "PRMHead":
        """Load a saved head. With ``backbone_fingerprint``, refuse a head trained on other
        features (another backbone, layer, pooling, dtype...): its scores would be meaningless.

        The config is checked field by field (``read_config``) and against the weight file's
        shapes before any module is built, and weights that are not finite are refused.
        """
        directory = Path(directory)
        config, calibration = read_model_config(directory)
        if backbone_fingerprint is not None:
            check_same_backbone(config.backbone_fingerprint, backbone_fingerprint, directory)
        path = directory / WEIGHTS_NAME
        shapes = _weight_shapes(path)
        _check_sizes(config, shapes, path)
        build = EnsembleHead if config.ensemble > 1 else cls
        with torch.device("meta"):  # the expected names and shapes, without allocating
            expected = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
        if shapes != expected:
            missing = sorted(set(expected) - set(shapes))
            extra = sorted(set(shapes) - set(expected))
            wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
            what = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                    else f"{wrong[0]} has shape {shapes[wrong[0]]}, the config gives "
                         f"{expected[wrong[0]]}")
            raise PrmkitError(f"{path} does not match {directory / CONFIG_NAME}: {what}")
        tensors = load_file(path)
        for name, tensor in tensors.items():
            if not torch.isfinite(tensor).all():
                raise PrmkitError(f"{path}: {name} holds NaN or infinite values")
        model = build(config)
        model.load_state_dict(tensors)
        model.calibration = calibration
        model.eval()
        return model


class EnsembleHead(nn.Module):
    """K heads of one shape (``config.ensemble``), trained with different seeds and saved as one
    model. Its logit is the log-odds of the members' mean probability, so scoring, calibration
    and every aggregate treat it like one head; ``spread`` is the members' standard deviation,
    a measure of how much they disagree about a step.

    Shape: features (B, T, D), step_mask (B, T) -> logits (B, T).
    """

    def __init__(self, config: PRMConfig):
        super().__init__()
        self.config = config
        member = replace(config, ensemble=1)
        self.members = nn.ModuleList(PRMHead(member) for _ in range(config.ensemble))
        self.calibration = Calibration()

    @classmethod
    def from_members(cls, members: list[PRMHead]) -> "EnsembleHead":
        ensemble = cls(replace(members[0].config, ensemble=len(members)))
        for mine, theirs in zip(ensemble.members, members):
            mine.load_state_dict(theirs.state_dict())
        return ensemble.eval()

    def member_probs(self, features: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """Shape: (K, B, T)."""
        return torch.stack([torch.sigmoid(m(features, step_mask)) for m in self.members])

    def forward(self, features: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        p = self.member_probs(features, step_mask).mean(dim=0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)  # (B, T)

    def spread(self, features: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        return self.member_probs(features, step_mask).std(dim=0, unbiased=False)  # (B, T)

    save_pretrained = PRMHead.save_pretrained


# config.json, format 2: {"model_type": "prmkit", "format": 2, "prmkit_version": ...,
#   "head": {input_dim, hidden_size, ...}, "embedding": {"config": EmbedConfig fields,
#   "fingerprint": Backbone.fingerprint, "backbone_path": absolute path or null},
#   "training": TrainConfig fields or null, "calibration": Calibration fields, "finetune":
#   FinetuneConfig fields, only for a head saved with its fine-tuned backbone}. Format 1 was
#   {"prmkit_head": PRMConfig fields}; a format-2 folder without "calibration" reads as T = 1.
CONFIG_FORMAT = 2
MODEL_TYPE = "prmkit"
_HEAD_KEYS = ("input_dim", "hidden_size", "num_layers", "num_heads", "dropout", "max_steps",
              "causal", "target", "head_type", "aux_outcome", "aux_next_step", "ensemble")
_TOP_KEYS = ("model_type", "format", "prmkit_version", "head", "embedding", "training",
             "calibration", "finetune")
_EMBEDDING_KEYS = ("config", "fingerprint", "backbone_path")


def config_sections(config: PRMConfig, training: dict | None = None,
                    calibration: Calibration | None = None, finetune: dict | None = None) -> dict:
    from prmkit import __version__

    values = asdict(config)
    sections = {"model_type": MODEL_TYPE, "format": CONFIG_FORMAT, "prmkit_version": __version__,
                "head": {k: values[k] for k in _HEAD_KEYS},
                "embedding": {"config": config.embed, "fingerprint": config.backbone_fingerprint,
                              "backbone_path": config.backbone_path},
                "training": training, "calibration": asdict(calibration or Calibration())}
    if finetune is not None:
        sections["finetune"] = finetune
    return sections


def read_config(directory: str | os.PathLike) -> PRMConfig:
    """The config of a head saved with ``save_pretrained`` (format 2, or format 1 from older
    versions), checked key by key and type by type; errors name the file and the key."""
    return read_model_config(directory)[0]


def read_raw_config(directory: str | os.PathLike) -> tuple[object, str]:
    """A model folder's config.json parsed strictly (no NaN, no duplicate keys, bounded depth),
    and its path for messages; the sections are checked by the readers of each stage."""
    from prmkit._io import open_input
    from prmkit.errors import DataError
    from prmkit.records import find_bad_value, loads

    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise PrmkitError(f"{directory} is not a saved prmkit model (needs {CONFIG_NAME} and "
                          f"{WEIGHTS_NAME})")
    try:
        with open_input(config_path) as f:
            raw = loads(f.read(1 << 20).decode("utf-8"))
        bad = find_bad_value(raw)
        if bad is not None:
            raise DataError(bad[1], field=bad[0] or None)
    except UnicodeDecodeError:
        raise PrmkitError(f"{config_path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise PrmkitError(f"{config_path}: invalid JSON: {e.msg} (line {e.lineno})") from None
    except DataError as e:
        raise PrmkitError(f"{config_path}: {e}") from None
    return raw, str(config_path)


def read_model_config(directory: str | os.PathLike) -> tuple[PRMConfig, Calibration]:
    """``read_config`` and the saved calibration (T = 1 and no threshold where none was saved).
    The training section is checked by ``prmkit.train.read_training``."""
    from prmkit.schema import from_dict

    raw, where = read_raw_config(directory)
    if isinstance(raw, dict) and "prmkit_head" in raw and len(raw) == 1:  # format 1
        return from_dict(PRMConfig, raw["prmkit_head"], f"{where}: prmkit_head"), Calibration()
    if not isinstance(raw, dict) or raw.get("model_type") != MODEL_TYPE:
        raise PrmkitError(f"{where}: not a prmkit head config (model_type is not "
                          f"{MODEL_TYPE!r})")
    if raw.get("format") != CONFIG_FORMAT:
        raise PrmkitError(f"{where}: config format {raw.get('format')!r}; this prmkit reads "
                          f"formats 1 and {CONFIG_FORMAT} (a newer prmkit wrote it?)")
    _known(raw, _TOP_KEYS, where)
    head, embedding = raw.get("head"), raw.get("embedding")
    if not isinstance(head, dict) or not isinstance(embedding, dict):
        raise PrmkitError(f"{where}: head and embedding must be objects")
    _known(head, _HEAD_KEYS, f"{where}: head")
    _known(embedding, _EMBEDDING_KEYS, f"{where}: embedding")
    if not isinstance(raw.get("training"), (dict, type(None))):
        raise PrmkitError(f"{where}: training must be an object or null")
    config = from_dict(PRMConfig, {**head, "embed": embedding.get("config", {}),
                                   "backbone_fingerprint": embedding.get("fingerprint", {}),
                                   "backbone_path": embedding.get("backbone_path")},
                       f"{where}: head")
    if config.embed:
        from prmkit.embed import EmbedConfig

        from_dict(EmbedConfig, config.embed, f"{where}: embedding.config")
    calibration = Calibration()
    if raw.get("calibration") is not None:
        calibration = from_dict(Calibration, raw["calibration"], f"{where}: calibration")
    return config, calibration


def _known(section: dict, keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise PrmkitError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(keys)})")


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header, reading no tensor data."""
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # a damaged or foreign file: the library's errors vary by kind
        raise PrmkitError(f"{path}: not a readable safetensors file ({type(e).__name__}: "
                          f"{e})") from None


def _check_sizes(config: PRMConfig, shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    """The config's sizes against the weights, before anything is built: a config claiming
    100,000 layers or a 16,384-wide head is refused here, not after gigabytes are allocated."""
    checks = {"input_proj.weight": (config.hidden_size, config.input_dim),
              "step_position.weight": (config.max_steps, config.hidden_size)}
    if config.head_type == "linear":
        checks = {"head.weight": (1, config.input_dim)}
    prefix = "members.0." if config.ensemble > 1 else ""
    checks = {prefix + name: shape for name, shape in checks.items()}
    members = {k.split(".")[1] for k in shapes if k.startswith("members.")}
    if config.ensemble > 1 and len(members) != config.ensemble:
        raise PrmkitError(f"{path} holds {len(members)} ensemble members, the config gives "
                          f"{config.ensemble}")
    for name, shape in checks.items():
        if shapes.get(name) != shape:
            raise PrmkitError(f"{path}: {name} has shape {shapes.get(name)}, the config gives "
                              f"{shape}")
    layers = {k[len(prefix):].split(".")[2] for k in shapes
              if k.startswith(prefix + "encoder.layers.")}
    if config.head_type == "transformer" and len(layers) != config.num_layers:
        raise PrmkitError(f"{path} holds {len(layers)} encoder layers, the config gives "
                          f"{config.num_layers}")


def check_same_backbone(saved: dict, given: dict, where: str | os.PathLike = "the model") -> None:
    differences = [f"{key}: trained with {saved.get(key)!r}, given {given.get(key)!r}"
                   for key in sorted(set(saved) | set(given)) if saved.get(key) != given.get(key)]
    if differences:
        raise PrmkitError(f"{where} was trained on features from another backbone setting; "
                          "refusing to score with it (" + "; ".join(differences) + ")")
