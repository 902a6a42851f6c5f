"""Backbones: a language model that turns (question, steps) into one vector per step.

Two ways to run a model, one contract (see ``tokens.py``):

* **per prefix** (bidirectional encoders such as the bundled MiniLM): step ``t`` is embedded from
  an input holding the question and steps ``1..t`` only, so later steps cannot leak into it.
* **single pass** (causal LMs): the question and all steps go through the model once and each
  step's vector is read at its span; a causal model's state at position ``i`` depends only on
  tokens ``<= i``, so this equals the per-prefix result at a fraction of the cost.

Pooling over a step (``EmbedConfig.pooling``):
    ``"step"``   mean of the current step's token states, with the question and earlier steps as
                 context (the default);
    ``"last"``   the state at the step's last token (the separator, where the tokenizer keeps
                 it as a token: WordPiece drops whitespace);
    ``"prefix"`` mean over every token up to the step's end (the reference spec's pooling).

Context (``EmbedConfig.context``): ``"prefix"`` (the default) runs each step with the question and
earlier steps before it; ``"none"`` runs each step on its own, so every distinct step text is
embedded once however many solutions share it. ``"none"`` is far cheaper on large candidate
pools, and the head's attention over steps still sees the earlier steps; but the vectors no
longer carry the question, so use it knowingly (the quick demo does, and says so).

What a step vector holds (``EmbedConfig.features``): ``"hidden"`` the pooled hidden states of the
read layers; ``"surprise"`` the causal LM's own surprise at the step's tokens (``surprise.py``:
log-probabilities under its LM head, in context); ``"both"`` the two side by side.

The forward pass runs only as deep as it must: hidden states are read with hooks on the decoder
layers, and a pass that needs nothing deeper than layer k stops before layer k runs (surprise
needs the final state and the LM head, so it runs every layer). For a causal LM reading steps in
context, candidates that share a question or first steps share their forward pass (``prefix.py``);
everything else runs as rows (``rows.py``). Contexts longer than the model allows are cut from the
left (the current step kept; a single step longer than the window keeps its last tokens) and
counted in ``EmbedStats.truncated_steps``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from prmkit.embed.attention import use_grouped_sdpa
from prmkit.embed.prefix import Continuation, Past, PrefixTree, run_continuations, run_tree
from prmkit.embed.rows import EmbedStats, plan_batches, plan_rows, run_rows
from prmkit.embed.sources import (BACKBONE_DEFAULTS, BACKBONES, DEFAULT_BACKBONE,
                                  resolve_backbone, tokenizer_sha256, weights_sha256)
from prmkit.embed.surprise import NUM_SURPRISE, step_surprise, token_logprobs
from prmkit.embed.tokens import StepTokens, special_tokens_around, tokenize_steps
from prmkit.errors import DataError, PrmkitError

POOLINGS = ("step", "last", "prefix")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MODES = ("auto", "per_prefix", "single_pass")
CONTEXTS = ("prefix", "none")
FEATURES = ("hidden", "surprise", "both")
CAUSAL_FEATURES = "both"  # what a causal LM's steps become when no features are named
# Key/value states a prefix tree may hold, counted as if no token were shared (an upper bound):
# SmolLM2 in bfloat16 keeps 23 KB per token over its 30 layers, so a tree covers ~190,000 tokens
# of candidates. Larger trees give larger forward batches (1.6x the speed of trees a quarter the
# size, measured on pools of 32).
TREE_KV_BYTES = 4 << 30


@dataclass
class EmbedConfig:
    """How steps are embedded. Everything here that changes the vectors is in the cache key."""

    backbone: str = DEFAULT_BACKBONE
    pooling: str = "step"
    # Index into the model's hidden states (-1 the last, 0 the input embeddings), or several:
    # their vectors are concatenated (``compare_layers`` reads many layers in one pass).
    # None: the backbone's measured default (``BACKBONE_DEFAULTS``), else the last layer.
    layer: int | tuple[int, ...] | None = None
    max_length: int | None = None  # None: the model's own limit
    # "bfloat16" loads the weights in bfloat16 (1.5x the speed of CPU autocast here, and a third
    # of its per-batch overhead); None: the backbone's default, else "float32"
    dtype: str | None = None
    separator: str = "\n\n"
    mode: str = "auto"  # "auto": single pass for causal LMs, per prefix otherwise
    context: str = "prefix"  # "none": each step embedded on its own
    batch_tokens: int = 8192  # padded tokens per forward batch
    truncation: str = "left"  # or "error"
    # "hidden", "surprise" (causal LMs only) or "both"; None: "both" for a causal LM (README,
    # "Feature sets": it beats either alone), "hidden" for an encoder
    features: str | None = None
    # Candidates sharing a question or first steps share their forward pass (causal LMs, in
    # context). Not in the cache key: the vectors equal a separate pass up to float rounding.
    share_prefixes: bool = True

    def __post_init__(self):
        if isinstance(self.layer, list):  # a config read back from JSON
            self.layer = tuple(self.layer)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.features is not None and self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if self.truncation not in ("left", "error"):
            raise ValueError(f"truncation must be 'left' or 'error', got {self.truncation!r}")
        if self.batch_tokens < 1:
            raise ValueError("batch_tokens must be positive")
        if self.max_length is not None and self.max_length < 8:
            raise ValueError("max_length must be at least 8")


def _layers(layer: int | tuple[int, ...], num_layers: int) -> tuple[int, ...]:
    layers = layer if isinstance(layer, tuple) else (layer,)
    if not layers:
        raise PrmkitError("no layer given")
    for one in layers:
        # hidden_states holds the input embeddings and then one entry per layer
        if not -(num_layers + 1) <= one <= num_layers:
            raise PrmkitError(f"layer {one} does not exist: the backbone has {num_layers} layers "
                              f"(use 0..{num_layers}, or -1 for the last)")
    return layers


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the deepest layer read has its input."""


def _blocks(model, num_layers: int) -> torch.nn.ModuleList:
    """The model's stack of transformer layers (``layers``, ``h``, ``encoder.layer``, ...)."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers \
                and len({type(m) for m in module}) == 1:
            return module
    raise PrmkitError(f"cannot find the {num_layers} transformer layers of "
                      f"{type(model).__name__}")


class Backbone:
    """A tokenizer and a model behind the step-end contract. The model loads on first use.

    ``device``: where the model runs (a ``torch.device`` or its name; step vectors always come
    back to the CPU). ``adapter``: a folder of LoRA weights (``peft``) laid over the model, as
    ``prmkit train --finetune lora`` saves them; its hash joins the fingerprint, so a fine-tuned
    backbone never shares a cache entry with the frozen one.
    """

    def __init__(self, config: EmbedConfig, device: str | torch.device = "cpu",
                 adapter: str | Path | None = None):
        from transformers import AutoConfig, AutoTokenizer

        defaults = BACKBONE_DEFAULTS.get(config.backbone, {})
        config = replace(config,
                         layer=defaults.get("layer", -1) if config.layer is None else config.layer,
                         dtype=config.dtype or defaults.get("dtype", "float32"))
        self.config = config
        self.path = resolve_backbone(config.backbone)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        model_config = AutoConfig.from_pretrained(self.path)
        self.num_layers = int(model_config.num_hidden_layers)
        self.model_hidden_size = int(model_config.hidden_size)
        heads = int(model_config.num_attention_heads)
        kv_heads = int(getattr(model_config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(model_config, "head_dim", None) or self.model_hidden_size // heads)
        # keys and values of one token in one layer
        self.kv_bytes = 2 * kv_heads * head_dim * DTYPES[config.dtype].itemsize
        archs = model_config.architectures or []
        causal = bool(getattr(model_config, "is_decoder", False)) or any(
            a.endswith("ForCausalLM") or "LMHead" in a for a in archs)
        if config.features is None:
            config = replace(config, features=CAUSAL_FEATURES if causal else "hidden")
            self.config = config
        if config.mode == "single_pass" and not causal:
            raise PrmkitError(f"{config.backbone} is not a causal LM: a single pass would let "
                              "later steps leak into earlier ones (use mode 'per_prefix')")
        if config.features != "hidden" and not causal:
            raise PrmkitError(f"features {config.features!r} need a causal LM with an LM head; "
                              f"{config.backbone} is not one (use features='hidden', "
                              "--features hidden)")
        self.causal = causal
        self.single_pass = causal if config.mode == "auto" else config.mode == "single_pass"
        # Sharing needs every layer to attend to the whole past (no sliding windows).
        self._can_share = (config.share_prefixes and self.single_pass
                           and config.context == "prefix" and all(
                               kind == "full_attention"
                               for kind in getattr(model_config, "layer_types", None) or []))
        self._set_layers(config.layer)
        limit = getattr(model_config, "max_position_embeddings", None) or 512
        self.max_length = min(config.max_length or limit, limit)
        self.prefix_ids, self.suffix_ids = special_tokens_around(self.tokenizer)
        if causal:
            # A trailing special token (EOS) would sit after every step in a single pass, so it
            # cannot be part of the per-step input; a causal model never reads it for earlier
            # positions anyway, and leaving it out in both modes keeps them equal.
            self.suffix_ids = []
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.device = torch.device(device)
        self.adapter = Path(adapter) if adapter is not None else None
        if self.adapter is not None and not (self.adapter / "adapter_config.json").is_file():
            raise PrmkitError(f"{self.adapter} is not a LoRA adapter folder (no "
                              "adapter_config.json)")
        self._model = None
        self._fingerprint = None
        self._piece_ids: dict[str, list[int]] = {}  # questions and steps recur across a pool

    def _set_layers(self, layer: int | tuple[int, ...]) -> None:
        self.layers = _layers(layer, self.num_layers)
        features = self.config.features
        # hidden_states[k] is the input to layer k; the last is the final (normed) state
        self.read_layers = tuple(k % (self.num_layers + 1) for k in self.layers) \
            if features != "surprise" else ()
        self.needs_final = features != "hidden" or self.num_layers in self.read_layers
        # layers that run: all when the final state is needed, else up to the deepest read
        self.layers_run = self.num_layers if self.needs_final else max(self.read_layers)
        self.hidden_size = (self.model_hidden_size * len(self.read_layers)
                            + (NUM_SURPRISE if features != "hidden" else 0))

    @property
    def shares_prefixes(self) -> bool:
        """Whether candidates sharing a question or first steps share their forward pass (reading
        only the input embeddings, layer 0, there is nothing to share)."""
        return self._can_share and self.layers_run > 0

    def with_layer(self, layer: int | tuple[int, ...]) -> "Backbone":
        """The same backbone read at other layers, sharing the loaded model and tokenizer."""
        other = copy.copy(self)
        other.config = replace(self.config, layer=layer)
        other._set_layers(layer)
        other._fingerprint = None
        return other

    @property
    def source(self) -> str:
        """The backbone as named, with a local path made absolute: where it came from."""
        name = self.config.backbone
        if name in BACKBONES or not Path(name).expanduser().exists():
            return name
        return str(Path(name).expanduser().resolve())

    def head_settings(self) -> dict:
        """What a head trained on these vectors saves to find its backbone again
        (``PRMConfig``'s ``embed``, ``backbone_fingerprint``, ``backbone_path``)."""
        source = self.source
        return {"embed": asdict(self.config), "backbone_fingerprint": self.fingerprint,
                "backbone_path": source if Path(source).is_absolute() else None}

    @property
    def fingerprint(self) -> dict:
        """Everything that decides the vectors, for cache keys and for checking saved heads."""
        if self._fingerprint is None:
            self._fingerprint = {
                "weights_sha256": weights_sha256(self.path),
                "tokenizer_sha256": tokenizer_sha256(self.path),
                "special_ids": [self.prefix_ids, self.suffix_ids],
                "pooling": self.config.pooling,
                "layer": self.config.layer if isinstance(self.config.layer, int)
                else list(self.config.layer),
                "max_length": self.max_length,
                "dtype": self.config.dtype,
                "separator": self.config.separator,
                "context": self.config.context,
                "single_pass": self.single_pass,
                "truncation": self.config.truncation,
                "features": self.config.features,
                "hidden_size": self.hidden_size,
            }
            if self.adapter is not None:
                self._fingerprint["adapter_sha256"] = adapter_sha256(self.adapter)
        return self._fingerprint

    @property
    def model(self):
        """The whole model: with its LM head for a causal LM (surprise reads it)."""
        if self._model is None:
            from transformers import AutoModel, AutoModelForCausalLM
            from transformers.utils import logging as hf_logging

            # AutoModel drops a causal LM's head; its "unused weights" warning is expected noise.
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                loader = AutoModelForCausalLM if self.causal else AutoModel
                self._model = loader.from_pretrained(self.path, dtype=DTYPES[self.config.dtype])
            finally:
                hf_logging.set_verbosity(verbosity)
            if self.adapter is not None:
                self._model = _with_adapter(self._model, self.adapter)
            self._model.to(self.device)
            self._model.eval()
            if self.causal:
                use_grouped_sdpa(self._model)
            self._cache_arg = "cache" if "cache" in inspect.signature(
                self.base_model.forward).parameters else "past_key_values"
        return self._model

    @property
    def base_model(self):
        """The model without its LM head: input ids to hidden states."""
        return self.model.base_model

    def tokenize(self, question: str, steps: list[str]) -> StepTokens:
        sep = self.config.separator
        self._remember([question + sep] + [step + sep for step in steps])
        return tokenize_steps(self._piece_ids.__getitem__, question, steps, sep)

    def _remember(self, pieces: list[str]) -> None:
        """Tokenize the pieces not seen yet, in one call."""
        new = [p for p in dict.fromkeys(pieces) if p not in self._piece_ids]
        if new:
            if len(self._piece_ids) > 1_000_000:
                self._piece_ids.clear()
            self._piece_ids.update(zip(new, self.tokenizer(new, add_special_tokens=False)["input_ids"]))

    # --- step by step: a prefix's key/value states kept, each new step costs its own tokens ----

    @property
    def incremental(self) -> bool:
        """Whether ``begin``/``extend`` keep key/value states (else a caller re-embeds)."""
        return self.shares_prefixes

    def begin(self, question: str, stats: EmbedStats) -> Past:
        """Run the question alone; its ``Past`` is what its steps continue from."""
        self._check_incremental()
        tokens = self.tokenize(question, [])
        ids = self.prefix_ids + list(tokens.ids)
        if len(ids) >= self.max_length:
            raise PrmkitError(f"the question alone fills the backbone's {self.max_length} tokens")
        return run_continuations(self, [Continuation(None, ids, [])], stats)[0][1]

    def extend(self, pasts: list[Past], steps: list[str], stats: EmbedStats
               ) -> tuple[list[np.ndarray], list[Past]]:
        """Each step after its past, tokenized on its own with the separator (the step-end
        contract), in forward batches: its (H,) vector and its own ``Past``. The vectors equal
        those of a single pass over the whole solution (float rounding aside)."""
        self._check_incremental()
        sep = self.config.separator
        self._remember([step + sep for step in steps])
        ids = [self._piece_ids[step + sep] for step in steps]
        for step, past, one in zip(steps, pasts, ids):
            if not one:
                raise DataError("the step produces no tokens", field="step")
            if past.end + len(one) > self.max_length:
                raise PrmkitError(f"a solution grows past the backbone's {self.max_length} "
                                  "tokens: stop searching earlier (--max-depth)")
        vectors: list[np.ndarray] = [None] * len(steps)  # type: ignore[list-item]
        out: list[Past] = [None] * len(steps)  # type: ignore[list-item]
        for batch in plan_batches([len(one) for one in ids], self.config.batch_tokens):
            jobs = [Continuation(pasts[i], ids[i], [(0, len(ids[i]))]) for i in batch]
            for i, (vector, past) in zip(batch, run_continuations(self, jobs, stats)):
                vectors[i], out[i] = vector[0], past
        return vectors, out

    def _check_incremental(self) -> None:
        if not self.incremental:
            raise PrmkitError(f"{self.config.backbone} cannot continue from kept key/value "
                              "states (it needs a causal LM read in context with full "
                              "attention); score whole prefixes instead")

    # --- embedding a set of trajectories ----------------------------------------------------------

    def embed(self, tokens: list[StepTokens], on_batch=None) -> tuple[list[np.ndarray], EmbedStats]:
        """(num_steps, H) float32 vectors for each trajectory, and the work done.

        Trajectories that fit the model's window share their prefixes when the backbone allows
        it (``shares_prefixes``, ``prefix.py``); the others run as rows (``rows.py``). The
        result is a function of ``tokens`` alone: the same input always gives the same batches.
        """
        stats = EmbedStats()
        out = [np.zeros((t.num_steps, self.hidden_size), np.float32) for t in tokens]
        pre = self.prefix_ids
        stats.input_tokens = sum(len(pre) + len(t.ids) for t in tokens)
        shared = [i for i, t in enumerate(tokens)
                  if self.shares_prefixes and len(pre) + len(t.ids) <= self.max_length]
        limit = TREE_KV_BYTES // (self.kv_bytes * max(self.layers_run, 1))
        for group in _token_groups(shared, [len(pre) + len(tokens[i].ids) for i in shared],
                                   limit):
            tree = PrefixTree.build([(pre + list(tokens[i].ids),
                                      [len(pre) + tokens[i].question_len]
                                      + [len(pre) + e for e in tokens[i].ends]) for i in group])
            vectors = run_tree(self, tree, stats, on_batch)
            for i, steps in zip(group, tree.steps):
                for t, (node, span) in enumerate(steps):
                    out[i][t] = vectors[node][span]
        rest = sorted(set(range(len(tokens))) - set(shared))
        jobs = []
        for i in rest:
            traj_jobs, truncated = plan_rows(self, i, tokens[i])
            jobs.extend(traj_jobs)
            stats.truncated_steps += truncated
        pooled, job_stats = run_rows(self, jobs, on_batch=on_batch)
        stats.add(job_stats)
        for job, vectors in zip(jobs, pooled):
            for (step, _, _), vector in zip(job.spans, vectors):
                out[job.traj][step] = vector
        return out, stats

    # --- the forward pass -----------------------------------------------------------------------

    @torch.no_grad()
    def run(self, ids: torch.Tensor, attention_mask: torch.Tensor,
            position_ids: torch.Tensor | None = None,
            cache=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The forward pass, only as deep as needed, without gradients.

        Returns the read layers' states side by side, (B, L, H_read) float32 on the CPU (None
        when only surprise is read), and the final (normed) states (B, L, H), on the model's
        device, when the LM head will read them (None otherwise). ``cache`` (a transformers
        ``DynamicCache``) holds the past for continuations and receives the new keys and values
        of the layers that ran.

        Shape: ids (B, L); attention_mask (B, past + L); position_ids (B, L).
        """
        read, final = self.forward(ids, attention_mask, position_ids, cache)
        return (read.cpu() if read is not None else None,
                final if self.config.features != "hidden" else None)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None,
                cache=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``run`` with gradients where the caller enables them (fine-tuning, ``finetune``):
        the read layers' states (B, L, H_read) float32 and the final states (B, L, H) (None
        when the pass stopped early), both on the model's device."""
        blocks = _blocks(self.base_model, self.num_layers)
        captured: dict[int, torch.Tensor] = {}

        def capture(k: int, stop: bool):
            def hook(module, args, kwargs):
                captured[k] = args[0] if args else kwargs["hidden_states"]
                if stop:
                    raise _Stop
            return hook

        handles = [blocks[k].register_forward_pre_hook(
            capture(k, stop=k == self.layers_run), with_kwargs=True)
            for k in sorted(set(self.read_layers) - {self.num_layers})]
        move = _mover(self.device)
        kwargs = {"input_ids": move(ids), "attention_mask": move(attention_mask)}
        if position_ids is not None:
            kwargs["position_ids"] = move(position_ids)
        if cache is not None:
            kwargs.update({self._cache_arg: cache, "use_cache": True})
        else:
            kwargs["use_cache"] = False
        final = None
        try:
            final = self.base_model(**kwargs).last_hidden_state
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        read = None
        if self.read_layers:
            read = torch.cat([(final if k == self.num_layers else captured[k]).float()
                              for k in self.read_layers], dim=-1)
        return read, final

    def token_logprobs(self, states: list[torch.Tensor], targets: list[torch.Tensor],
                       sizes: list[int]) -> list[np.ndarray]:
        """Token log-probabilities (``surprise.token_logprobs``) of several spans, in one call.

        Shape: states[i] (n_i, H) final states before each target, targets[i] (n_i,) ->
        [(n_i,)].
        """
        if not sizes:
            return []
        rows = token_logprobs(self.model.get_output_embeddings(), torch.cat(states),
                              torch.cat(targets).to(self.device))
        return np.split(rows.cpu().numpy(), np.cumsum(sizes)[:-1])

    def step_vectors(self, read: torch.Tensor | None, spans: list[tuple[int, int]],
                     base_sum: np.ndarray | None = None, base_count: int = 0,
                     tokens: list[np.ndarray] | None = None) -> np.ndarray:
        """The vectors of the steps at ``spans`` of one row, (n_spans, H) float32: pooled states
        of the read layers and/or surprise features, side by side.

        ``base_sum`` and ``base_count``: the sum of read states and number of tokens before the
        row (a continuation's ancestors), for ``"prefix"`` pooling.
        Shape: read (L, H_read); tokens[i] (n_i,), the log-probabilities of span i's tokens.
        """
        if not spans:
            return np.zeros((0, self.hidden_size), np.float32)
        parts = []
        if read is not None:
            parts.append(self._pool(read, spans, base_sum, base_count))
        if tokens is not None:
            parts.append(np.stack([step_surprise(t) for t in tokens]))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _pool(self, hidden: torch.Tensor, spans: list[tuple[int, int]],
              base_sum: np.ndarray | None = None, base_count: int = 0) -> np.ndarray:
        """Shape: hidden (L, H) -> (n_spans, H)."""
        starts = torch.tensor([s for s, _ in spans])
        ends = torch.tensor([e for _, e in spans])
        if self.config.pooling == "last":
            return hidden[ends - 1].numpy()
        # float64 prefix sums: a mean over any span in one gather, without losing precision on
        # layers whose states reach the tens of thousands.
        csum = torch.cat([torch.zeros(1, hidden.shape[1], dtype=torch.float64),
                          hidden.double().cumsum(dim=0)])  # (L + 1, H)
        if self.config.pooling == "prefix":
            sums = csum[ends]
            if base_sum is not None:
                sums = sums + torch.from_numpy(base_sum)[None, :]
            return (sums / (ends + base_count)[:, None]).float().numpy()
        means = (csum[ends] - csum[starts]) / (ends - starts)[:, None]
        return means.float().numpy()


def _mover(device: torch.device):
    """Tensors to ``device``: from pinned memory without waiting on a CUDA GPU, as they are
    elsewhere."""
    if device.type == "cuda":
        return lambda x: x.pin_memory().to(device, non_blocking=True)
    return lambda x: x.to(device)


def adapter_sha256(folder: Path) -> str:
    """SHA-256 over a LoRA adapter folder's files (names and contents)."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _with_adapter(model, folder: Path):
    """``model`` with the LoRA weights in ``folder`` laid over it, unmerged (merging would round
    them into the base's dtype and move the scores): peft changes the model's layers in place,
    and the model keeps its own type and forward."""
    try:
        from peft import PeftModel
    except ImportError:
        raise PrmkitError("a LoRA fine-tuned model needs peft: pip install 'prmkit[finetune]'"
                          ) from None
    with quiet_peft():
        PeftModel.from_pretrained(model, str(folder))
    return model


@contextlib.contextmanager
def quiet_peft():
    """peft asks transformers a question transformers 5 deprecates (``is_gradient_checkpointing``);
    the FutureWarning says nothing to a prmkit user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def _token_groups(rows: list[int], lengths: list[int], limit: int) -> list[list[int]]:
    """Consecutive runs of ``rows`` holding at most ``limit`` tokens (one row at least)."""
    groups: list[list[int]] = []
    total = 0
    for row, length in zip(rows, lengths):
        if not groups or total + length > limit:
            groups.append([])
            total = 0
        groups[-1].append(row)
        total += length
    return groups
