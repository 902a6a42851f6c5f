"""An OpenAI-compatible completions endpoint as a ``Generator`` (vLLM, llama.cpp's server, ...).

One POST to ``{base_url}/completions`` per call, the ``n`` samples in one request::

    {"model": "Qwen/Qwen2.5-Math-7B-Instruct", "prompt": "<question>\\n\\n<step 1>\\n\\n",
     "n": 8, "max_tokens": 512, "temperature": 0.7, "seed": 0, "stop": ["\\n\\n"]}

(``stop`` only when one step is asked for.) Each choice's ``text`` is cut into steps at the
separator; ``finish_reason == "length"`` marks a continuation cut by ``max_tokens`` (not
finished), and ``usage.completion_tokens`` is counted. With ``logprobs=True`` the request asks
for ``"logprobs": 1`` and each completion's ``meta["logprob"]`` is the sum of its
``logprobs.token_logprobs`` (the ``log p`` of a beam search's score), where the server sends it.

Network failures, timeouts and 429/5xx answers are retried ``retries`` times with exponential
backoff; any other HTTP error, or a body that is not the JSON described above, raises
``GenerationError`` naming the URL and what was wrong. Uses only the standard library.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from prmkit.answers import final_answer
from prmkit.generate.base import Completion, GenerationError, prompt_of, split_steps

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MAX_BODY = 16 << 20  # bytes read from one answer


class OpenAIGenerator:
    """Continuations from an OpenAI-compatible ``/v1/completions`` endpoint.

    Args:
        base_url: up to and including ``/v1``, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model's name.
        api_key: sent as a bearer token when given.
        separator: between steps, in the prompt and in the generated text.
        max_tokens, temperature: per request.
        timeout_s: per attempt; retries: further attempts after a retryable failure.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 separator: str = "\n\n", max_tokens: int = 512, temperature: float = 0.7,
                 timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5,
                 logprobs: bool = False):
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key, self.separator = model, api_key, separator
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.logprobs = logprobs

    def complete(self, question: str, prefix: Sequence[str], n: int,
                 max_steps: int | None = None, seed: int = 0) -> list[Completion]:
        body = {"model": self.model, "prompt": prompt_of(question, prefix, self.separator),
                "n": n, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "seed": seed}
        if max_steps == 1:
            body["stop"] = [self.separator]
        if self.logprobs:
            body["logprobs"] = 1
        answer = self._post(body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or len(choices) != n or not all(
                isinstance(c, dict) and isinstance(c.get("text"), str) for c in choices):
            raise GenerationError(f"{self.url}: expected {n} choices with a text, got "
                                  f"{_preview(answer)}")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens", 0)
        per_choice = tokens // n if isinstance(tokens, int) and n else 0
        out = []
        for choice in sorted(choices, key=lambda c: c.get("index", 0)):
            steps = split_steps(choice["text"], self.separator)
            if max_steps is not None:
                steps = steps[:max_steps]
            cut = choice.get("finish_reason") == "length"
            out.append(Completion(steps, not cut and final_answer(steps) is not None,
                                  per_choice, _logprob(choice) if self.logprobs else {}))
        return out

    @property
    def url(self) -> str:
        return f"{self.base_url}/completions"

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read(MAX_BODY + 1)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if e.code in _RETRY_STATUS:
                    continue
                raise GenerationError(f"{self.url}: {last}: {_preview(e.read(300))}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = str(getattr(e, "reason", e)) or type(e).__name__
                continue
            if len(raw) > MAX_BODY:
                raise GenerationError(f"{self.url}: answer larger than {MAX_BODY} bytes")
            try:
                return json.loads(raw)
            except ValueError:
                raise GenerationError(f"{self.url}: the answer is not JSON: "
                                      f"{_preview(raw)}") from None
        raise GenerationError(f"{self.url}: no answer after {self.retries + 1} attempts "
                              f"(last: {last})")


def _preview(value, limit: int = 120) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _logprob(choice: dict) -> dict:
    """``{"logprob": sum of the choice's token log-probabilities}``, where the server sent them
    (``logprobs.token_logprobs``, as vLLM and OpenAI's completions API do); else nothing."""
    values = (choice.get("logprobs") or {}).get("token_logprobs") \
        if isinstance(choice.get("logprobs"), dict) else None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        return {}
    return {"logprob": float(sum(values))}
