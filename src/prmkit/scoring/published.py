"""Published PRMs behind the ``Scorer`` protocol: Math-Shepherd, Qwen2.5-Math-PRM, and
token-classification PRMs trained with TRL's ``PRMTrainer`` (e.g. on ``prmkit data convert
--to trl`` rows).

Each wrapper builds a solution's token ids piece by piece and records, as it appends them, the
position whose output scores each step. Nothing searches the ids for a tag: a step whose text
contains the tag (or a separator token) still gets exactly one score, read where we put it.

Batches are sorted by length and right-padded (the attention mask is built from the lengths, and
positions are unaffected because padding comes after every real token); forward passes run under
``torch.no_grad``. Models load in float32 unless ``dtype="bfloat16"`` is asked for.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import torch

from prmkit.embed.backbone import DTYPES
from prmkit.embed.tokens import special_tokens_around
from prmkit.errors import PrmkitError
from prmkit.records import Trajectory
from prmkit.scoring.base import StepScores, score

Encoded = tuple[list[int], list[int]]  # (token ids, the position scoring each step)

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# Stands for the assistant's reply while a chat template is rendered (private-use characters).
_REPLY = "\ue000prmkit-reply\ue000"


def single_token(tokenizer, text: str, what: str) -> int:
    """The id of ``text`` when it encodes (without special tokens) to exactly one token."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise PrmkitError(f"the {what} {text!r} must be a single token of this tokenizer; "
                          f"it encodes to {len(ids)} tokens {ids}")
    return ids[0]


def ids_after(tokenizer, anchor: str, anchor_id: int, text: str) -> list[int]:
    """The ids of ``text`` as they follow the one-token ``anchor``: ``anchor + text`` encoded,
    the anchor's id dropped. A text encoded alone may gain a leading token the whole string would
    not have (SentencePiece's prefix space); after the anchor it tokenizes as in context."""
    ids = tokenizer.encode(anchor + text, add_special_tokens=False)
    if not ids or ids[0] != anchor_id:
        raise PrmkitError(f"{anchor!r} merges with the text after it ({text[:20]!r}...) in this "
                          "tokenizer, so it would not stay one token in context")
    return ids[1:]


class TokenScorer(ABC):
    """Batching and loading shared by the published PRMs. A subclass says how a trajectory
    becomes ids (``encode``) and how the model's outputs at the recorded positions become
    probabilities (``read``), and which transformers class loads it (``load_model``)."""

    auto_class = "AutoModelForTokenClassification"

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None,
                 threshold: float | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length, self.threshold = batch_size, max_length, threshold
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @abstractmethod
    def encode(self, trajectory: Trajectory) -> Encoded:
        """The ids of one solution and the position scoring each step."""

    @abstractmethod
    def read(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
             cols: torch.Tensor) -> torch.Tensor:
        """P(step correct) at ``(rows[s], cols[s])`` of the batch. Shape: (B, L) inputs -> (S,)."""

    @classmethod
    def load_model(cls, name_or_path: str | os.PathLike, dtype: torch.dtype):
        """The model behind the scorer (``auto_class``), from a folder or a hub id."""
        import transformers

        return getattr(transformers, cls.auto_class).from_pretrained(name_or_path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, batch_size: int = 8,
                        max_length: int | None = None, threshold: float | None = None,
                        dtype: str = "float32", device: str = "cpu", **kwargs) -> "TokenScorer":
        """Load the model and its tokenizer (a folder or a hub id); ``kwargs`` go to
        ``__init__``."""
        from transformers import AutoTokenizer

        model = cls.load_model(name_or_path, _dtype(dtype))
        return cls(model.to(device), AutoTokenizer.from_pretrained(name_or_path), batch_size,
                   max_length, threshold, **kwargs)

    @torch.no_grad()
    def score_batch(self, trajectories: list[Trajectory]) -> list[StepScores]:
        """Per-step probabilities of each trajectory, in order (run sorted by length)."""
        encoded = [self.encode(t) for t in trajectories]
        if self.max_length is not None:
            for i, (ids, _) in enumerate(encoded):
                if len(ids) > self.max_length:
                    raise PrmkitError(f"solution {i} is {len(ids)} tokens long, over "
                                      f"max_length={self.max_length}: shorten it or raise "
                                      "max_length")
        device = self.model.device
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        out: list[StepScores] = [[] for _ in encoded]
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)  # (B, L)
            attention_mask = torch.zeros(len(batch), width, dtype=torch.long)  # (B, L)
            rows, cols = [], []
            for r, i in enumerate(batch):
                ids, positions = encoded[i]
                input_ids[r, :len(ids)] = torch.tensor(ids)
                attention_mask[r, :len(ids)] = 1
                rows += [r] * len(positions)
                cols += positions
            probs = self.read(input_ids.to(device), attention_mask.to(device),
                              torch.tensor(rows, device=device), torch.tensor(cols, device=device))
            probs = probs.float().cpu().tolist()  # (S,)
            for i in batch:
                n = len(encoded[i][1])
                out[i], probs = probs[:n], probs[n:]
        return out

    def score(self, question: str, steps: list[str]) -> StepScores:
        """Per-step probabilities for one solution."""
        return score(self, question, steps)


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise PrmkitError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


class MathShepherdScorer(TokenScorer):
    """Math-Shepherd (peiyi9979/math-shepherd-mistral-7b-prm): a causal LM whose next-token
    logits at each step tag say "+" (good) or "-" (bad).

    Layout (the model card's ``f"{question} {output}"``, with ``output`` the steps each followed
    by " ки" and joined by "\\n")::

        [special tokens before a text, e.g. BOS]  ids(question + " " + steps[0])  TAG
        ids("\\n" + steps[1])  TAG  ...  ids("\\n" + steps[-1])  TAG

    TAG is the id of the tag alone (the card: ``tokenizer.encode("ки")[-1]``, "▁ки" in Mistral's
    tokenizer, where " ки" is that one token). Each "\\n" + step is encoded as it follows the tag
    (``ids_after``), which reproduces the card's whole-string encoding for SentencePiece
    tokenizers. Step t's probability is softmax over the LM logits of ("+", "-") at its TAG,
    taking "+"; the good/bad ids are those of ``good + " " + bad`` (the card:
    ``tokenizer.encode("+ -")[1:]``), refused unless that is exactly two tokens. Steps are used as
    given: Math-Shepherd's own steps start with "Step k:", which the model was trained on.

    Only the final hidden states at the tags go through the LM head (the full forward's
    (B, L, vocab) logits are never built).
    """

    auto_class = "AutoModelForCausalLM"

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None,
                 threshold: float | None = None, step_tag: str = "ки", good_token: str = "+",
                 bad_token: str = "-"):
        super().__init__(model, tokenizer, batch_size, max_length, threshold)
        self.step_tag, self.good_token, self.bad_token = step_tag, good_token, bad_token
        self.tag_id = single_token(tokenizer, step_tag, "step tag")
        pair = tokenizer.encode(f"{good_token} {bad_token}", add_special_tokens=False)
        if len(pair) != 2:
            raise PrmkitError(f"{good_token + ' ' + bad_token!r} must encode to two tokens (good, "
                              f"bad) with this tokenizer; it gives {len(pair)}: {pair}")
        self.good_id, self.bad_id = pair
        self.before_ids = special_tokens_around(tokenizer)[0]

    def encode(self, trajectory: Trajectory) -> Encoded:
        steps = trajectory.steps
        ids = self.before_ids + self.tokenizer.encode(f"{trajectory.question} {steps[0]}",
                                                      add_special_tokens=False)
        positions = []
        for t, step in enumerate(steps):
            if t:
                ids += ids_after(self.tokenizer, self.step_tag, self.tag_id, "\n" + step)
            ids.append(self.tag_id)
            positions.append(len(ids) - 1)
        return ids, positions

    def read(self, input_ids, attention_mask, rows, cols):
        hidden = self.model.base_model(input_ids=input_ids,
                                       attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        logits = self.model.get_output_embeddings()(hidden[rows, cols])  # (S, vocab)
        pair = logits[:, [self.good_id, self.bad_id]].float()  # (S, 2)
        return pair.softmax(-1)[:, 0]


class QwenPRMScorer(TokenScorer):
    """Qwen2.5-Math-PRM (Qwen/Qwen2.5-Math-PRM-7B, -72B): a 2-class head on every token; a step's
    reward is P(class 1) at the "<extra_0>" that follows it.

    Layout (the model card): the chat template over
    ``[system: QWEN_SYSTEM, user: question, assistant: "<extra_0>".join(steps) + "<extra_0>"]``
    (``add_generation_prompt=False``), i.e. for Qwen's ChatML::

        ids("<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n"
            "<|im_start|>assistant\\n" + steps[0])  SEP  ids(steps[1])  SEP ... ids(steps[-1])  SEP
        ids("<|im_end|>\\n")

    SEP is the id of "<extra_0>" (refused unless one token); each later piece is encoded as it
    follows SEP (``ids_after``), which equals the card's whole-string encoding since "<extra_0>"
    is a special token the tokenizer splits on. The rendered text is encoded without adding
    special tokens (the template writes its own; Qwen's tokenizer adds none anyway). Without a
    chat template the layout is plain: [BOS when the tokenizer has one] ids(question + "\\n" +
    steps[0]) SEP ids(steps[1]) SEP ... (no system prompt).

    The model is read as ``outputs[0]``, (B, L, 2) logits: Qwen's remote-code
    ``Qwen2ForProcessRewardModel`` and any ``*ForTokenClassification`` with 2 labels.
    """

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None,
                 threshold: float | None = None, system: str = QWEN_SYSTEM,
                 step_separator: str = "<extra_0>"):
        super().__init__(model, tokenizer, batch_size, max_length, threshold)
        self.system, self.step_separator = system, step_separator
        self.sep_id = single_token(tokenizer, step_separator, "step separator")

    # Qwen's own PRMs need their remote code, as the card loads them (a trust decision: set it
    # to False on a subclass to refuse it)
    trust_remote_code = True

    @classmethod
    def load_model(cls, name_or_path: str | os.PathLike, dtype: torch.dtype):
        """``AutoModel`` with the remote code, as the card loads it; a folder whose config names
        a ``*ForTokenClassification`` loads without it."""
        from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

        remote = cls.trust_remote_code
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=remote)
        if any(a.endswith("ForTokenClassification") for a in config.architectures or []):
            return AutoModelForTokenClassification.from_pretrained(name_or_path, dtype=dtype)
        return AutoModel.from_pretrained(name_or_path, dtype=dtype, trust_remote_code=remote)

    def _around(self, question: str) -> tuple[list[int], str, str]:
        """(ids before the text, text before the steps, text after them) for one question."""
        if self.tokenizer.chat_template is None:
            bos = self.tokenizer.bos_token_id
            return ([bos] if bos is not None else []), question + "\n", ""
        messages = [{"role": "system", "content": self.system},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": _REPLY}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=False)
        parts = text.split(_REPLY)
        if len(parts) != 2:
            raise PrmkitError("the chat template does not write the assistant's reply once as "
                              "given, so the step separators cannot be placed")
        return [], parts[0], parts[1]

    def encode(self, trajectory: Trajectory) -> Encoded:
        before, head, tail = self._around(trajectory.question)
        steps, tok, sep = trajectory.steps, self.tokenizer, self.step_separator
        ids = before + tok.encode(head + steps[0], add_special_tokens=False)
        ids.append(self.sep_id)
        positions = [len(ids) - 1]
        for step in steps[1:]:
            ids += ids_after(tok, sep, self.sep_id, step)
            ids.append(self.sep_id)
            positions.append(len(ids) - 1)
        if tail:
            ids += ids_after(tok, sep, self.sep_id, tail)
        return ids, positions

    def read(self, input_ids, attention_mask, rows, cols):
        # outputs[0] is the logits: no labels are passed, so there is no loss before them.
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, L, C)
        if logits.shape[-1] != 2:
            raise PrmkitError(f"a Qwen-style PRM gives 2 logits per token; this model gives "
                              f"{logits.shape[-1]}")
        return logits[rows, cols].float().softmax(-1)[:, 1]  # (S,)


class TokenClassificationScorer(TokenScorer):
    """A token-classification PRM as TRL's ``PRMTrainer`` trains it (checked against
    ``PRMTrainer.tokenize_row`` in TRL 1.13.0, ``trl/experimental/prm/prm_trainer.py``), e.g. on
    the rows ``prmkit data convert --to trl`` writes.

    Layout (tokenize_row)::

        [BOS when tokenizer.bos_token_id is not None]  ids(question)
        ids(steps[0]) ids(separator)  ids(steps[1]) ids(separator) ...

    Each piece is encoded on its own without special tokens (the step and the separator
    separately, as TRL does; nothing between the question and the first step); step t is scored
    at the last token of its ``ids(step) + ids(separator)``, where TRL puts its label.
    ``separator`` is TRL's default ``step_separator`` "\\n"; use "\\n\\n" for a model trained
    with that. A 2-label model gives softmax(logits)[..., 1]; a 1-label model sigmoid(logit).

    A model written by ``prmkit export`` carries its own layout in its config
    (``prmkit_export``): prmkit's step-end contract, ``prefix_ids`` then ``question +
    separator`` and each ``step + separator`` tokenized alone, scored at each piece's last
    token; its separator and saved threshold are used unless others are given.
    """

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None,
                 threshold: float | None = None, separator: str | None = None):
        exported = getattr(model.config, "prmkit_export", None)
        self.layout = "prmkit" if isinstance(exported, dict) else "trl"
        if self.layout == "prmkit":
            separator = exported["separator"] if separator is None else separator
            threshold = exported.get("threshold") if threshold is None else threshold
            self.prefix_ids = [int(i) for i in exported.get("prefix_ids", [])]
        super().__init__(model, tokenizer, batch_size, max_length, threshold)
        self.separator = "\n" if separator is None else separator
        self.num_labels = model.config.num_labels
        if self.num_labels not in (1, 2):
            raise PrmkitError(f"a token-classification PRM has 1 or 2 labels; this model has "
                              f"{self.num_labels}")
        self.separator_ids = tokenizer.encode(self.separator, add_special_tokens=False)

    def encode(self, trajectory: Trajectory) -> Encoded:
        if self.layout == "prmkit":
            return self._encode_prmkit(trajectory)
        bos = self.tokenizer.bos_token_id
        ids = ([bos] if bos is not None else []) + self.tokenizer.encode(
            trajectory.question, add_special_tokens=False)
        positions = []
        for t, step in enumerate(trajectory.steps):
            piece = self.tokenizer.encode(step, add_special_tokens=False) + self.separator_ids
            if not piece:
                raise PrmkitError(f"step {t} and the separator produce no tokens")
            ids += piece
            positions.append(len(ids) - 1)
        return ids, positions

    def _encode_prmkit(self, trajectory: Trajectory) -> Encoded:
        """prmkit's step-end contract (``embed/tokens.py``), as ``prmkit export`` records it."""
        from prmkit.embed.tokens import plain_ids, tokenize_steps

        tokens = tokenize_steps(plain_ids(self.tokenizer), trajectory.question,
                                list(trajectory.steps), self.separator)
        offset = len(self.prefix_ids)
        return self.prefix_ids + list(tokens.ids), [offset + end - 1 for end in tokens.ends]

    def read(self, input_ids, attention_mask, rows, cols):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, C)
        picked = logits[rows, cols].float()  # (S, C)
        if self.num_labels == 1:
            return torch.sigmoid(picked[:, 0])
        return picked.softmax(-1)[:, 1]


PUBLISHED = {"math-shepherd": MathShepherdScorer, "qwen-prm": QwenPRMScorer,
             "token-classification": TokenClassificationScorer}
