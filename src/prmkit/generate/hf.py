"""A Hugging Face causal LM as a ``Generator``: ``model.generate`` with a step stop string.

The prompt is the question and the steps so far, each followed by the separator (``prompt_of``:
the layout the embedding pipeline reads); an instruct model with a chat template gets the
question as the user's message and the steps so far as the start of its reply. The ``n``
samples of one call run as one batch; for one step, generation stops at the first separator
after some content; to the end, at EOS or ``max_new_tokens``. The generated text is cut into
steps at the separator. Prompts in a batch are padded on the left, so every row's new tokens
start at the same position. ``Completion.meta["logprob"]`` is the log-probability of the new
tokens under the distribution they were sampled from (temperature applied): the ``log p`` of a
beam search's score.

``model`` is anything ``resolve_backbone`` takes: a short name ("smollm2": the offline SmolLM2
from its package), a local folder, or a hub id.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transformers import StoppingCriteria, StoppingCriteriaList

from prmkit.answers import final_answer
from prmkit.generate.base import Completion, prompt_of, split_steps


class HFGenerator:
    """Continuations sampled from a causal LM.

    Args:
        model: short name, folder or hub id (see ``prmkit.embed.sources.resolve_backbone``).
        separator: between steps.
        max_new_tokens: per continuation; temperature: sampling temperature (0: greedy).
        dtype: "float32" or "bfloat16".
        chat: use the tokenizer's chat template where it has one (instruct models).
    """

    def __init__(self, model: str = "smollm2", separator: str = "\n\n",
                 max_new_tokens: int = 256, temperature: float = 0.7, dtype: str = "float32",
                 chat: bool = True, device: str | torch.device = "cpu"):
        self.model_name, self.separator, self.chat = model, separator, chat
        self.device = torch.device(device)
        self.max_new_tokens, self.temperature, self.dtype = max_new_tokens, temperature, dtype
        self._model = self._tokenizer = None

    def load(self) -> "HFGenerator":
        """Load the tokenizer and weights (once); returns self."""
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from prmkit.embed.sources import resolve_backbone

            path = resolve_backbone(self.model_name)
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._tokenizer.padding_side = "left"
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(
                path, dtype={"float32": torch.float32, "bfloat16": torch.bfloat16}[self.dtype])
            self._model.to(self.device).eval()
        return self

    def prompt(self, question: str, prefix: Sequence[str]) -> str:
        """The text the model continues: with a chat template (an instruct model), the question
        as the user's message and the steps so far as the start of the reply; else
        ``prompt_of``."""
        self.load()
        tok = self._tokenizer
        if not (self.chat and tok.chat_template):
            return prompt_of(question, prefix, self.separator)
        messages = [{"role": "user", "content": question}]
        if not prefix:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        reply = self.separator.join(prefix) + self.separator
        return tok.apply_chat_template(messages + [{"role": "assistant", "content": reply}],
                                       tokenize=False, continue_final_message=True)

    def complete(self, question: str, prefix: Sequence[str], n: int,
                 max_steps: int | None = None, seed: int = 0) -> list[Completion]:
        self.load()
        tok = self._tokenizer
        encoded = tok([self.prompt(question, prefix)] * n, return_tensors="pt", padding=True,
                      add_special_tokens=False).to(self.device)
        options = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tok.pad_token_id}
        if self.temperature > 0:
            options.update(do_sample=True, temperature=self.temperature, top_k=0)
        else:
            options.update(do_sample=False)
        if max_steps == 1:
            start = encoded["input_ids"].shape[1]
            options["stopping_criteria"] = StoppingCriteriaList(
                [_StepEnd(tok, start, self.separator)])
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = self._model.generate(**encoded, **options, output_scores=True,
                                          return_dict_in_generate=True)
            # log-probability of each new token under the (temperature-scaled) distribution
            # it was drawn from: (n, new)
            logprobs = self._model.compute_transition_scores(output.sequences, output.scores,
                                                             normalize_logits=True)
        new = output.sequences[:, encoded["input_ids"].shape[1]:]  # (n, new)
        out = []
        for row, row_logprobs in zip(new, logprobs):
            ids = row.tolist()
            end = ids.index(tok.eos_token_id) if tok.eos_token_id in ids else len(ids)
            kept = [i for i in range(end) if ids[i] != tok.pad_token_id]
            logprob = float(row_logprobs[kept].double().sum())
            ended = tok.eos_token_id in ids
            if ended:
                ids = ids[:ids.index(tok.eos_token_id)]
            ids = [i for i in ids if i != tok.pad_token_id]
            steps = split_steps(tok.decode(ids, skip_special_tokens=True), self.separator)
            if max_steps is not None:
                steps = steps[:max_steps]
            out.append(Completion(steps, final_answer(steps) is not None, len(ids),
                                  {"logprob": logprob}))
        return out


class _StepEnd(StoppingCriteria):
    """Stops each row once its new text holds a separator after some content (a separator
    right at the start, or the prompt's own, does not count)."""

    def __init__(self, tokenizer, start: int, separator: str):
        self.tokenizer, self.start, self.separator = tokenizer, start, separator

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        return torch.tensor([self.separator in text.lstrip() for text in texts],
                            device=input_ids.device)
