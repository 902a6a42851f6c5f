"""Published PRMs (Math-Shepherd, Qwen2.5-Math-PRM, TRL token classification) on tiny random
models saved with a byte-level BPE tokenizer trained here: each wrapper must read the positions
the official recipe reads, whatever the step text holds."""

from __future__ import annotations

import json
from itertools import chain

import pytest
import torch

from prmkit.errors import PrmkitError
from prmkit.records import Trajectory
from prmkit.scoring import Scorer, load_scorer
from prmkit.scoring.published import (QWEN_SYSTEM, MathShepherdScorer, QwenPRMScorer,
                                      TokenClassificationScorer)

QUESTION = "Tom has 3 apples and 4 pears. He eats 2. How many are left?"
STEPS = ["3 + 4 = 7 fruits.", "7 - 2 = 5.", "The answer is 5."]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tokenizer():
    """Byte-level BPE that puts <s> before a text (like Mistral's), with "ки" as one token that
    takes the space before it (as " ки" is one token for Mistral) and Qwen's special tokens."""
    from tokenizers import (AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors,
                            trainers)
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    text = [f"{QUESTION} " + "\n".join(STEPS) + "\n\n"] * 20
    core.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<pad>", "<extra_0>", "<|im_start|>",
                                        "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    core.add_tokens([AddedToken("ки", lstrip=True)])
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", core.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    tokenizer.chat_template = CHATML
    return tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two fighting other jobs for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Saved tiny models: a causal LM (math-shepherd), a 2-label token classifier (qwen-prm and
    token-classification) and a 1-label one. Weights are scaled up (initializer_range 0.5) so
    that positions give clearly different probabilities."""
    from transformers import (AutoConfig, AutoModelForCausalLM,
                              AutoModelForTokenClassification)

    tokenizer = _tokenizer()
    sizes = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=256, initializer_range=0.5,
                 pad_token_id=tokenizer.pad_token_id)
    out = {}
    for name, family, build, labels in [
            ("causal", "llama", AutoModelForCausalLM, None),
            ("tc2", "qwen2", AutoModelForTokenClassification, 2),
            ("tc1", "llama", AutoModelForTokenClassification, 1)]:
        extra = {} if labels is None else {"num_labels": labels}
        torch.manual_seed(0)
        model = build.from_config(AutoConfig.for_model(family, **sizes, **extra))
        out[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(out[name])
        tokenizer.save_pretrained(out[name])
    return {k: str(v) for k, v in out.items()}


def _forward(folder, ids, causal=False):
    """The model's own forward on one unpadded row. Shape: (L,) ids -> (L, C) logits."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    cls = AutoModelForCausalLM if causal else AutoModelForTokenClassification
    model = cls.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def _shepherd_by_hand(scorer, folder, steps):
    """The model card's recipe: f"{question} {output}", output = steps each ending " ки", joined
    by "\\n"; encode the whole string (with BOS); softmax over the ("+", "-") logits at each
    tag."""
    tok = scorer.tokenizer
    ids = tok.encode(f"{QUESTION} " + "\n".join(f"{s} ки" for s in steps))
    tags = [i for i, x in enumerate(ids) if x == tok.encode("ки", add_special_tokens=False)[0]]
    good, bad = tok.encode("+ -", add_special_tokens=False)
    logits = _forward(folder, ids, causal=True)[:, [good, bad]]  # (L, 2)
    return ids, tags, logits.softmax(-1)[:, 0]  # (L,)


def test_math_shepherd_reads_the_tags_as_the_model_card(folders):
    scorer = MathShepherdScorer.from_pretrained(folders["causal"])
    assert isinstance(scorer, Scorer) and scorer.threshold is None
    ids, tags, probs = _shepherd_by_hand(scorer, folders["causal"], STEPS)
    assert len(tags) == 3 and ids[0] == scorer.tokenizer.bos_token_id
    assert scorer.encode(Trajectory(QUESTION, STEPS)) == (ids, tags)
    got = scorer.score(QUESTION, STEPS)
    assert got == pytest.approx(probs[tags].tolist(), abs=1e-5)
    # the test can fail: one token earlier gives other numbers
    shifted = probs[[t - 1 for t in tags]].tolist()
    assert max(abs(a - b) for a, b in zip(got, shifted)) > 1e-3


def test_math_shepherd_tag_inside_a_step_is_not_scored(folders):
    scorer = MathShepherdScorer.from_pretrained(folders["causal"])
    steps = [STEPS[0], "7 - 2 = 5 ки so far.", STEPS[2]]
    ids, tags, probs = _shepherd_by_hand(scorer, folders["causal"], steps)
    assert len(tags) == 4  # the whole string holds one tag too many
    ours = [tags[0], tags[2], tags[3]]  # the second is the step's own text
    assert scorer.encode(Trajectory(QUESTION, steps)) == (ids, ours)
    assert scorer.score(QUESTION, steps) == pytest.approx(probs[ours].tolist(), abs=1e-5)


def test_math_shepherd_layout_with_a_sentencepiece_style_tokenizer(folders):
    """Mistral's tokenizer puts "▁" before a text and makes " ки" one token "▁ки": a step
    encoded alone would gain a "▁" the whole string does not have; encoded after the tag it
    does not."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([  # "\n" apart, like SentencePiece's <0x0A>
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    card = f"{QUESTION} " + "\n".join(f"{s} ки" for s in STEPS)
    core.train_from_iterator([card + " + -"] * 20,
                             trainers.BpeTrainer(vocab_size=200, special_tokens=["<s>"]))
    core.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                        special_tokens=[("<s>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>")
    assert tok.convert_ids_to_tokens(tok.encode("\n" + STEPS[1], add_special_tokens=False))[0] \
        == "▁"  # the leading token a step encoded alone would bring
    scorer = MathShepherdScorer(AutoModelForCausalLM.from_pretrained(folders["causal"]), tok)
    ids = tok.encode(card)
    tags = [i for i, x in enumerate(ids) if x == tok.convert_tokens_to_ids("▁ки")]
    assert len(tags) == 3 and scorer.encode(Trajectory(QUESTION, STEPS)) == (ids, tags)


def _qwen_by_hand(folder, steps):
    """The model card's recipe: the chat template (here ChatML, written out) over system, user
    and "<extra_0>".join(steps) + "<extra_0>"; softmax(logits)[..., 1] where the ids are
    <extra_0>. Encoded without special tokens: Qwen's tokenizer adds none, this one adds <s>."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    text = (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}"
            f"<|im_end|>\n<|im_start|>assistant\n" + "<extra_0>".join(steps) +
            "<extra_0><|im_end|>\n")
    ids = tok.encode(text, add_special_tokens=False)
    seps = [i for i, x in enumerate(ids) if x == tok.convert_tokens_to_ids("<extra_0>")]
    return ids, seps, _forward(folder, ids).softmax(-1)[:, 1]  # (L,)


def test_qwen_prm_reads_the_separators_as_the_model_card(folders):
    scorer = QwenPRMScorer.from_pretrained(folders["tc2"])
    ids, seps, probs = _qwen_by_hand(folders["tc2"], STEPS)
    assert len(seps) == 3
    assert scorer.encode(Trajectory(QUESTION, STEPS)) == (ids, seps)
    got = scorer.score(QUESTION, STEPS)
    assert got == pytest.approx(probs[seps].tolist(), abs=1e-5)
    shifted = probs[[s - 1 for s in seps]].tolist()
    assert max(abs(a - b) for a, b in zip(got, shifted)) > 1e-3


def test_qwen_prm_separator_inside_a_step_and_plain_layout(folders):
    scorer = QwenPRMScorer.from_pretrained(folders["tc2"])
    steps = [STEPS[0], "7 - 2 = 5.<extra_0> still", STEPS[2]]
    ids, seps, probs = _qwen_by_hand(folders["tc2"], steps)
    assert len(seps) == 4
    ours = [seps[0], seps[2], seps[3]]
    assert scorer.encode(Trajectory(QUESTION, steps)) == (ids, ours)
    assert scorer.score(QUESTION, steps) == pytest.approx(probs[ours].tolist(), abs=1e-5)
    # without a chat template: <s> question "\n" step <extra_0> step <extra_0> ...
    scorer.tokenizer.chat_template = None
    tok = scorer.tokenizer
    plain, positions = scorer.encode(Trajectory(QUESTION, STEPS))
    expected = tok.encode(f"{QUESTION}\n" + "<extra_0>".join(STEPS) + "<extra_0>")
    assert plain == expected and plain[0] == tok.bos_token_id
    assert positions == [i for i, x in enumerate(expected) if x == scorer.sep_id]


def _trl_by_hand(tok, steps, separator="\n"):
    """TRL's PRMTrainer.tokenize_row (1.13): BOS + prompt ids, then each completion's ids +
    the separator's ids (encoded apart), its label on the last of them."""
    prompt_ids = [tok.bos_token_id] + tok(QUESTION, add_special_tokens=False)["input_ids"]
    separator_ids = tok.encode(separator, add_special_tokens=False)
    completions = [tok(s, add_special_tokens=False)["input_ids"] + separator_ids for s in steps]
    labels = [[-100] * (len(c) - 1) + [1] for c in completions]
    input_ids = prompt_ids + list(chain(*completions))
    labels = [-100] * len(prompt_ids) + list(chain(*labels))
    return input_ids, [i for i, label in enumerate(labels) if label != -100]


@pytest.mark.parametrize("separator", ["\n", "\n\n"])
def test_token_classification_reads_trl_label_positions(folders, separator):
    scorer = TokenClassificationScorer.from_pretrained(folders["tc2"], separator=separator)
    ids, positions = _trl_by_hand(scorer.tokenizer, STEPS, separator)
    assert scorer.encode(Trajectory(QUESTION, STEPS)) == (ids, positions)
    sep = scorer.tokenizer.encode(separator, add_special_tokens=False)
    assert all(ids[p + 1 - len(sep):p + 1] == sep for p in positions)  # each ends in the separator
    probs = _forward(folders["tc2"], ids).softmax(-1)[:, 1]  # (L,)
    got = scorer.score(QUESTION, STEPS)
    assert got == pytest.approx(probs[positions].tolist(), abs=1e-5)
    shifted = probs[[p - 1 for p in positions]].tolist()
    assert max(abs(a - b) for a, b in zip(got, shifted)) > 1e-3


def test_token_classification_with_one_label_is_a_sigmoid(folders):
    scorer = TokenClassificationScorer.from_pretrained(folders["tc1"], threshold=0.4)
    assert scorer.threshold == 0.4
    ids, positions = _trl_by_hand(scorer.tokenizer, STEPS)
    expected = torch.sigmoid(_forward(folders["tc1"], ids)[positions, 0]).tolist()
    assert scorer.score(QUESTION, STEPS) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("kind", ["math-shepherd", "qwen-prm", "token-classification"])
def test_a_padded_batch_equals_each_solution_alone(folders, kind):
    folder = folders["causal" if kind == "math-shepherd" else "tc2"]
    scorer = load_scorer(f"{kind}:{folder}", batch_size=2)
    data = [Trajectory(QUESTION, STEPS), Trajectory("Tom has 3?", ["3."]),
            Trajectory(QUESTION, STEPS + ["So 5 are left.", "Done: 5."]),
            Trajectory(QUESTION, STEPS[:2])]
    together = scorer.score_batch(data)
    assert [len(p) for p in together] == [3, 1, 5, 2]
    assert all(0 < p < 1 for p in chain(*together))
    for t, probs in zip(data, together):
        assert probs == pytest.approx(scorer.score_batch([t])[0], abs=1e-5)


def test_too_long_solutions_and_tokens_that_are_not_single_are_refused(folders):
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    scorer = TokenClassificationScorer.from_pretrained(folders["tc2"], max_length=10)
    with pytest.raises(PrmkitError, match=r"solution 1 is \d+ tokens long, over max_length=10"):
        scorer.score_batch([Trajectory("Tom?", ["3."]), Trajectory(QUESTION, STEPS)])
    with pytest.raises(PrmkitError, match=r"dtype must be one of \['bfloat16', 'float32'\]"):
        TokenClassificationScorer.from_pretrained(folders["tc2"], dtype="float16")
    half = TokenClassificationScorer.from_pretrained(folders["tc2"], dtype="bfloat16")
    full = TokenClassificationScorer.from_pretrained(folders["tc2"])
    assert half.model.dtype == torch.bfloat16 and full.model.dtype == torch.float32
    assert half.score(QUESTION, STEPS) == pytest.approx(full.score(QUESTION, STEPS), abs=0.05)
    tok = AutoTokenizer.from_pretrained(folders["causal"])
    lm = AutoModelForCausalLM.from_pretrained(folders["causal"])
    with pytest.raises(PrmkitError, match="step tag 'ки ки' must be a single token"):
        MathShepherdScorer(lm, tok, step_tag="ки ки")
    with pytest.raises(PrmkitError, match=r"'\+\+ -' must encode to two tokens"):
        MathShepherdScorer(lm, tok, good_token="++")
    tc = AutoModelForTokenClassification.from_pretrained(folders["tc2"])
    with pytest.raises(PrmkitError, match="step separator '<extra_9>' must be a single token"):
        QwenPRMScorer(tc, tok, step_separator="<extra_9>")


def test_load_scorer_dispatch(folders, tmp_path, monkeypatch):
    import huggingface_hub

    from prmkit.scoring import published
    from prmkit.scoring.prm import PRM

    # real loads: a KIND: prefix, kind=, and a transformers folder read by its architectures
    assert isinstance(load_scorer(f"math-shepherd:{folders['causal']}"), MathShepherdScorer)
    assert isinstance(load_scorer(folders["causal"]), MathShepherdScorer)  # LlamaForCausalLM
    assert isinstance(load_scorer(folders["tc2"], kind="qwen-prm"), QwenPRMScorer)
    scorer = load_scorer(folders["tc2"], batch_size=3)  # Qwen2ForTokenClassification
    assert isinstance(scorer, TokenClassificationScorer) and scorer.batch_size == 3

    # the rest records what would be loaded (no hub, no backbone)
    calls = []
    for cls in published.PUBLISHED.values():
        monkeypatch.setattr(cls, "from_pretrained", classmethod(
            lambda cls, name, batch_size, device: calls.append((cls.__name__, name)) or "loaded"))
    monkeypatch.setattr(PRM, "from_pretrained", classmethod(
        lambda cls, name, cache_dir, batch_size, device: calls.append(("PRM", name, cache_dir))))

    def folder(name, config):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        return str(tmp_path / name)

    load_scorer("peiyi9979/math-shepherd-mistral-7b-prm")
    load_scorer("Qwen/Qwen2.5-Math-PRM-7B")
    load_scorer("Qwen/Qwen2.5-Math-PRM-72B")
    rm = folder("rm", {"architectures": ["Qwen2ForProcessRewardModel"]})
    load_scorer(rm)
    head = folder("head", {"model_type": "prmkit", "format": 2})
    load_scorer(head, cache_dir="emb")
    load_scorer(f"prmkit:{head}")
    hub_config = folder("hub", {"architectures": ["MistralForCausalLM"]}) + "/config.json"
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, file: hub_config)
    load_scorer("someone/their-prm")  # an unknown hub id: its config.json alone is read
    assert calls == [("MathShepherdScorer", "peiyi9979/math-shepherd-mistral-7b-prm"),
                     ("QwenPRMScorer", "Qwen/Qwen2.5-Math-PRM-7B"),
                     ("QwenPRMScorer", "Qwen/Qwen2.5-Math-PRM-72B"),
                     ("QwenPRMScorer", rm), ("PRM", head, "emb"), ("PRM", head, None),
                     ("MathShepherdScorer", "someone/their-prm")]

    bert = folder("bert", {"architectures": ["BertModel"]})
    with pytest.raises(PrmkitError, match=r"\['BertModel'\] name no kind.*accepted: a folder "
                                          r"saved by `prmkit train`.*ForCausalLM"):
        load_scorer(bert)
    with pytest.raises(PrmkitError, match="is not a model folder or a hub id; accepted"):
        load_scorer(str(tmp_path / "missing" / "folder"))
    with pytest.raises(PrmkitError, match=r"not a model prmkit can score with \(no config.json\)"):
        load_scorer(str(tmp_path))
    assert load_scorer(rm, cache_dir="emb") == "loaded"  # no embedding cache: ignored
    with pytest.raises(PrmkitError, match="names the kind 'qwen-prm', but kind='prmkit'"):
        load_scorer(f"qwen-prm:{rm}", kind="prmkit")
    with pytest.raises(PrmkitError, match="unknown scorer kind 'bogus'"):
        load_scorer(rm, kind="bogus")


def test_published_prms_score_and_search_from_the_cli(folders, tmp_path):
    """``--scorer``/MODEL takes a published PRM wherever a PRM is used: score, rerank, search."""
    from prmkit.cli import main
    from prmkit.generate.solver import make_world
    from prmkit.records import read_jsonl, write_jsonl
    from prmkit.scoring import load_scorer

    data = tmp_path / "world.jsonl"
    write_jsonl(data, [t for p in make_world(2, 2, seed=0) for t in p.trajectories])
    scorer = f"token-classification:{folders['tc2']}"
    out = tmp_path / "scores.jsonl"
    assert main(["score", scorer, str(data), "--out", str(out), "--no-progress", "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = load_scorer(scorer).score_batch(read_jsonl(data))
    for row, probs in zip(rows, expected, strict=True):
        assert row["step_probs"] == pytest.approx(probs, abs=1e-6)
    assert main(["rerank", str(data), "--scorer", f"math-shepherd:{folders['causal']}",
                 "--out", str(tmp_path / "picks.jsonl"), "--no-progress", "-q"]) == 0
    assert main(["search", str(data), "--scorer", scorer, "--width", "2", "--expansions", "2",
                 "--n", "2", "--max-depth", "3", "--out", str(tmp_path / "beams.jsonl"),
                 "--no-progress", "-q"]) == 0
