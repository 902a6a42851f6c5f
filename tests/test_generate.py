"""Generators: the interface's helpers, the world's solver, a real HTTP endpoint on 127.0.0.1,
and a tiny Hugging Face causal LM with a byte-level tokenizer (so "\\n\\n" is a real stop)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prmkit import synthetic
from prmkit.answers import final_answer
from prmkit.generate import Completion, GenerationError, Generator, prompt_of
from prmkit.generate.openai_http import OpenAIGenerator
from prmkit.generate.solver import NoisySolver, SolverGenerator, make_world, problems_for


@pytest.mark.parametrize("steps, answer", [
    (["3 + 4 = 7.", "The answer is 7."], "7"),
    (["So the final answer is $\\boxed{\\frac{1}{2}}$."], "\\frac{1}{2}"),
    (["Answer: 12"], "12"),
    (["So 23 - 17 = 6.\nThe answer is: 6"], "6"),                 # SmolLM2 writes "is:"
    (["Tom has 11 left.\n#### 11"], "11"),                        # GSM8K's marker
    (["3 + 4 = 7."], None),
    ([], None),
])
def test_final_answer(steps, answer):
    assert final_answer(steps) == answer


def test_prompt_lays_out_steps_as_the_embedding_does():
    assert prompt_of("Q?", ["a", "b"]) == "Q?\n\na\n\nb\n\n"
    assert prompt_of("Q?", []) == "Q?\n\n"


# --- the world's solver ---------------------------------------------------------------------

def test_solver_generator_continues_world_solutions():
    world = make_world(3, 2, seed=7)
    records = [t for p in world for t in p.trajectories]
    generator = SolverGenerator(problems_for(records))
    assert isinstance(generator, Generator)
    t = records[0]
    prefix = t.steps[:1]
    full = generator.complete(t.question, prefix, 4, seed=1)
    assert len(full) == 4 and all(c.finished for c in full)
    assert all(c.steps[-1].startswith("The answer is") for c in full)
    assert generator.complete(t.question, prefix, 4, seed=1) == full  # the seed fixes them
    one = generator.complete(t.question, prefix, 3, max_steps=1, seed=1)
    assert all(len(c.steps) == 1 for c in one)
    # a continuation is a world solution: the solver can grade prefix + continuation
    problem = generator.problems[next(iter(generator.problems))]
    assert problem.question == world[0].problem.question
    graded = synthetic.label_solution(world[0].problem, prefix + full[0].steps)
    assert graded.outcome in (True, False)
    with pytest.raises(GenerationError, match="knows no problem"):
        generator.complete("Another question?", [], 1)


def test_problems_for_refuses_records_of_another_world():
    t = make_world(1, 1, seed=2)[0].trajectories[0]
    with pytest.raises(ValueError, match="not a record of the demo world"):
        problems_for([type(t)(question=t.question, steps=t.steps, meta={"problem_id": "x"})])
    other = synthetic.WorldConfig(min_steps=6, max_steps=6)
    with pytest.raises(ValueError, match="not the one this world config makes"):
        problems_for([t], other)


def test_a_weaker_solver_can_roll_out():
    world = make_world(2, 1, seed=3)
    weak = SolverGenerator([p.problem for p in world], NoisySolver(strength=-2.0))
    out = weak.complete(world[0].problem.question, [], 8, seed=0)
    assert len(out) == 8


# --- an OpenAI-compatible endpoint, served for real ------------------------------------------

class _Endpoint:
    """A completions server on 127.0.0.1 whose answers a test scripts in advance."""

    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                endpoint.requests.append((self.path, json.loads(self.rfile.read(length)),
                                          self.headers.get("Authorization")))
                status, body, delay = endpoint.answers.pop(0)
                time.sleep(delay)
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _choices(*texts, finish="stop"):
    return {"choices": [{"index": i, "text": t, "finish_reason": finish}
                        for i, t in enumerate(texts)],
            "usage": {"completion_tokens": 10 * len(texts)}}


def test_http_generator_reads_choices_into_steps():
    endpoint = _Endpoint([(200, _choices("4 * 2 = 8.\n\nThe answer is 8.", "4 * 2 = 9.\n\n"), 0),
                          (200, _choices("4 * 2 = 8."), 0)])
    with endpoint as url:
        generator = OpenAIGenerator(url, "tiny", api_key="k", retries=0)
        out = generator.complete("Q?", ["Step one."], 2, seed=5)
        one = generator.complete("Q?", [], 1, max_steps=1)
    assert out == [Completion(["4 * 2 = 8.", "The answer is 8."], True, 10),
                   Completion(["4 * 2 = 9."], False, 10)]
    assert one == [Completion(["4 * 2 = 8."], False, 10)]
    (path, body, auth), (_, body_one, _) = endpoint.requests
    assert path == "/v1/completions" and auth == "Bearer k"
    assert body == {"model": "tiny", "prompt": "Q?\n\nStep one.\n\n", "n": 2,
                    "max_tokens": 512, "temperature": 0.7, "seed": 5}
    assert body_one["stop"] == ["\n\n"] and body_one["prompt"] == "Q?\n\n"


def test_http_generator_sums_token_logprobs_when_asked():
    answer = _choices("4 * 2 = 8.", "4 * 2 = 9.")
    answer["choices"][0]["logprobs"] = {"token_logprobs": [-0.5, -0.25, -1.0]}
    endpoint = _Endpoint([(200, answer, 0)])
    with endpoint as url:
        out = OpenAIGenerator(url, "tiny", retries=0, logprobs=True).complete("Q?", [], 2,
                                                                             max_steps=1)
    assert endpoint.requests[0][1]["logprobs"] == 1
    assert out[0].meta == {"logprob": -1.75} and out[1].meta == {}  # the second sent none


def test_http_generator_retries_what_can_pass_and_stops_on_what_cannot():
    busy = _Endpoint([(503, {"error": "busy"}, 0), (429, {"error": "slow down"}, 0),
                      (200, _choices("The answer is 1."), 0)])
    with busy as url:
        out = OpenAIGenerator(url, "tiny", retries=2, backoff_s=0).complete("Q?", [], 1)
    assert out[0].finished and len(busy.requests) == 3

    bad_request = _Endpoint([(400, {"error": "no such model"}, 0)])
    with bad_request as url, pytest.raises(GenerationError, match="HTTP 400.*no such model"):
        OpenAIGenerator(url, "tiny", retries=3, backoff_s=0).complete("Q?", [], 1)
    assert len(bad_request.requests) == 1  # not retried


@pytest.mark.parametrize("body, message", [
    (b"<html>Bad gateway</html>", "not JSON"),
    ({"choices": [{"index": 0, "text": "only one"}]}, "expected 2 choices"),
    ({"choices": [{"index": 0}, {"index": 1}]}, "expected 2 choices"),
    ([1, 2], "expected 2 choices"),
])
def test_http_generator_names_garbage(body, message):
    with _Endpoint([(200, body, 0)]) as url, pytest.raises(GenerationError, match=message):
        OpenAIGenerator(url, "tiny", retries=0).complete("Q?", [], 2)


def test_http_generator_gives_up_after_timeouts():
    slow = _Endpoint([(200, _choices("late"), 1.0), (200, _choices("late"), 1.0)])
    with slow as url, pytest.raises(GenerationError, match="no answer after 2 attempts"):
        OpenAIGenerator(url, "tiny", timeout_s=0.2, retries=1, backoff_s=0).complete("Q?", [], 1)


def test_http_generator_names_a_closed_port():
    with pytest.raises(GenerationError, match="no answer after 1 attempts"):
        OpenAIGenerator("http://127.0.0.1:9/v1", "tiny", retries=0).complete("Q?", [], 1)


# --- a Hugging Face causal LM ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random 2-layer llama with a byte-level BPE tokenizer trained here (newlines are
    tokens, so the step separator can stop generation)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-lm")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    text = ["Tom has 3 apples.\n\n3 + 4 = 7.\n\nThe answer is 7.\n\n"] * 20
    core.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=512,
                                  eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_hf_generator_samples_continuations(tiny_lm):
    from prmkit.generate.hf import HFGenerator

    generator = HFGenerator(tiny_lm, max_new_tokens=24, temperature=1.0)
    assert isinstance(generator, Generator)
    out = generator.complete("Tom has 3 apples.", ["3 + 4 = 7."], 3, seed=0)
    assert len(out) == 3 and all(0 < c.tokens <= 24 for c in out)
    assert all(isinstance(s, str) and s and "\n\n" not in s for c in out for s in c.steps)
    assert generator.complete("Tom has 3 apples.", ["3 + 4 = 7."], 3, seed=0) == out
    assert generator.complete("Tom has 3 apples.", ["3 + 4 = 7."], 3, seed=1) != out
    one = generator.complete("Tom has 3 apples.", [], 4, max_steps=1, seed=0)
    assert all(len(c.steps) <= 1 for c in one)


def test_hf_generator_reports_the_log_probability_of_what_it_wrote(tiny_lm):
    import torch
    from prmkit.generate.hf import HFGenerator

    generator = HFGenerator(tiny_lm, max_new_tokens=12, temperature=1.0)
    out = generator.complete("Tom has 3 apples.", [], 2, seed=3)
    tok, model = generator._tokenizer, generator._model
    prompt = tok(generator.prompt("Tom has 3 apples.", []), add_special_tokens=False)["input_ids"]
    for c in out:
        # the same tokens again, scored by one forward pass (temperature 1: the raw model)
        new = tok("\n\n".join(c.steps), add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + new])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
        expected = float(logits.gather(1, torch.tensor(new)[:, None]).sum())
        if len(new) == c.tokens:  # the text re-tokenizes to what was generated
            assert c.meta["logprob"] == pytest.approx(expected, abs=1e-4)
        assert c.meta["logprob"] < 0


@pytest.mark.slow
def test_smollm2_writes_steps_and_judges_them_for_real():
    """The offline SmolLM2 through the real generate loop, on 5 world problems: it solves few
    (a 135M model), so this checks the mechanics; label quality is measured with the solver."""
    from prmkit.generate.hf import HFGenerator
    from prmkit.label.judge import default_template, label_judge

    world = make_world(5, 1, seed=0)
    writer = HFGenerator("smollm2", max_new_tokens=96, temperature=0.7)
    for pool in world:
        [solution] = writer.complete(pool.problem.question, [], 1, seed=0)
        assert solution.steps and all(s.strip() and "\n\n" not in s for s in solution.steps)
        assert 0 < solution.tokens <= 96
        steps = writer.complete(pool.problem.question, [], 2, max_steps=1, seed=1)
        assert all(len(c.steps) == 1 for c in steps)
    judge = HFGenerator("smollm2", max_new_tokens=8, temperature=0.0)
    t = world[0].trajectories[0]
    labelled = label_judge(t, 0, judge, default_template())
    replies = labelled.meta["labeling"]["replies"]
    assert replies and all(isinstance(r, str) for r in replies)
    assert set(labelled.meta["labeling"]["verdicts"]) <= {True, False, None}


# --- every generator drives a search ---------------------------------------------------------

def _length_scorer():
    import torch
    from prmkit.baselines import length_features
    from prmkit.model import PRMConfig, PRMHead
    from prmkit.scoring import HeadScorer

    torch.manual_seed(0)
    return HeadScorer(PRMHead(PRMConfig(input_dim=2, hidden_size=8, num_layers=1,
                                        num_heads=2)), length_features)


def test_a_beam_search_over_an_http_endpoint():
    from prmkit.search import SearchConfig, beam_search

    # depth 1: two samples for the one beam; depth 2: two equal answers for each beam
    answers = [(200, {**_choices("4 * 2 = 8.", "4 * 2 = 9."), "choices": [
        {"index": 0, "text": "4 * 2 = 8.", "finish_reason": "stop",
         "logprobs": {"token_logprobs": [-0.1, -0.1]}},
        {"index": 1, "text": "4 * 2 = 9.", "finish_reason": "stop",
         "logprobs": {"token_logprobs": [-3.0, -3.0]}}]}, 0)]
    answers += [(200, _choices("The answer is 8.", "The answer is 8."), 0),  # one kept
                (200, _choices("The answer is 9.", "The answer is 9."), 0)]
    with _Endpoint(answers) as url:
        result = beam_search("Q?", _length_scorer(), OpenAIGenerator(url, "tiny", retries=0,
                                                                     logprobs=True),
                             SearchConfig(width=2, expansions=2, n=2, max_depth=4))
    assert {tuple(b.steps) for b in result.finished} == {("4 * 2 = 8.", "The answer is 8."),
                                                         ("4 * 2 = 9.", "The answer is 9.")}
    logps = {b.steps[0]: b.logp for b in result.finished}
    assert logps == {"4 * 2 = 8.": pytest.approx(-0.2), "4 * 2 = 9.": pytest.approx(-6.0)}
    assert result.generated_tokens == 3 * 20  # the server's usage counts, pruned ones too


def test_a_beam_search_with_a_hugging_face_model(tiny_lm):
    from prmkit.generate.hf import HFGenerator
    from prmkit.search import SearchConfig, beam_search, dvts

    generator = HFGenerator(tiny_lm, max_new_tokens=12, temperature=1.0)
    config = SearchConfig(width=2, expansions=2, n=4, max_depth=3)
    for run in (beam_search, dvts):
        result = run("Tom has 3 apples.", _length_scorer(), generator, config)
        assert result.finished and result.generated_tokens > 0
        assert all(b.logp < 0 for b in result.finished)  # the model's own log p was summed
