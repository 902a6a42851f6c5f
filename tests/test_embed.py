import numpy as np
import pytest
import torch

from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, embed_trajectories, tokenize_steps
from prmkit.embed.cache import entry_key
from prmkit.embed.rows import plan_rows, run_rows
from prmkit.embed.tokens import plain_ids
from prmkit.errors import PrmkitError
from prmkit.records import Trajectory

from conftest import tiny_causal_lm

Q = "A shop sells 3 boxes of 12 pens. How many pens?"
STEPS = ["3 boxes of 12 pens is 3 * 12 = 36 pens.", "The answer is 36."]


def test_steps_are_tokenized_on_their_own(minilm):
    tok = minilm.tokenizer
    st = tokenize_steps(plain_ids(tok), Q, STEPS, "\n\n")
    pieces = [tok(p, add_special_tokens=False)["input_ids"] for p in (Q + "\n\n", STEPS[0] + "\n\n", STEPS[1] + "\n\n")]
    assert list(st.ids) == pieces[0] + pieces[1] + pieces[2]
    assert st.question_len == len(pieces[0])
    assert st.ends == (len(pieces[0]) + len(pieces[1]), len(pieces[0]) + len(pieces[1]) + len(pieces[2]))
    # each step's last token is the step's own last token: a label placed there lands on the step
    assert st.ids[st.ends[0] - 1] == pieces[1][-1]
    assert tok.decode(st.ids[st.starts[1]:st.ends[1]]) == "the answer is 36."


def test_per_prefix_embedding_equals_the_prefix_encoded_alone(minilm):
    # step 0's vector must not depend on step 1 (no leak from later steps in a bidirectional encoder)
    two, _ = embed_trajectories([Trajectory(Q, STEPS)], minilm, progress=False)
    one, _ = embed_trajectories([Trajectory(Q, STEPS[:1])], minilm, progress=False)
    assert two[0].shape == (2, 384) and two[0].dtype == np.float16
    # equal up to batch-shape rounding; a leak of step 1 into step 0 would move it by ~0.1
    np.testing.assert_allclose(two[0][0].astype(np.float32), one[0][0], atol=1e-3)


def test_step_pooling_by_hand(minilm):
    # "step" pooling = mean of the step's token states in the model run on [CLS] q s0 [SEP]
    st = minilm.tokenize(Q, STEPS[:1])
    ids = [101] + list(st.ids) + [102]
    with torch.no_grad():
        h = minilm.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    expected = h[1 + st.starts[0]:1 + st.ends[0]].mean(0).numpy()
    got, _ = embed_trajectories([Trajectory(Q, STEPS[:1])], minilm, progress=False)
    np.testing.assert_allclose(got[0][0].astype(np.float32), expected, atol=2e-3)


def test_cache_second_run_does_no_forward_pass(minilm, tmp_path):
    data = [Trajectory(Q, STEPS), Trajectory("What is 1+1?", ["1+1=2."])]
    cache = EmbeddingCache(tmp_path, minilm.fingerprint)
    first, r1 = embed_trajectories(data, minilm, cache, progress=False)
    assert (r1["computed"], r1["cached"]) == (2, 0) and r1["forward_batches"] >= 1
    again = EmbeddingCache(tmp_path, minilm.fingerprint)  # a new process would open it like this
    second, r2 = embed_trajectories(data, minilm, again, progress=False)
    assert (r2["computed"], r2["cached"], r2["forward_batches"]) == (0, 2, 0)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change", [
    {"layer": 3}, {"pooling": "last"}, {"dtype": "bfloat16"}, {"max_length": 128},
    {"separator": "\n"}, {"context": "none"}, {"truncation": "error"}])
def test_every_setting_that_changes_vectors_changes_the_cache_folder(minilm, tmp_path, change):
    from dataclasses import asdict

    other = Backbone(EmbedConfig(**{**asdict(minilm.config), **change}))
    assert other.fingerprint != minilm.fingerprint
    assert EmbeddingCache(tmp_path, other.fingerprint).dir != \
        EmbeddingCache(tmp_path, minilm.fingerprint).dir


def test_fingerprint_covers_tokenizer_and_special_tokens(minilm):
    fp = minilm.fingerprint
    assert fp["special_ids"] == [[101], [102]]  # [CLS] ... [SEP]
    assert len(fp["tokenizer_sha256"]) == 64 and len(fp["weights_sha256"]) == 64
    assert entry_key(minilm.tokenize("q", ["a"])) != entry_key(minilm.tokenize("q", ["b"]))


def float32_steps(backbone, trajectories):
    """Step vectors straight from the backbone, before float16 storage. Also returns row count."""
    out, rows = [], 0
    for i, t in enumerate(trajectories):
        jobs, _ = plan_rows(backbone, i, backbone.tokenize(t.question, t.steps))
        pooled, stats = run_rows(backbone, jobs)
        rows += stats.rows
        vectors = np.zeros((t.num_steps, backbone.hidden_size), np.float32)
        for job, v in zip(jobs, pooled):
            for (step, _, _), row in zip(job.spans, v):
                vectors[step] = row
        out.append(vectors)
    return out, rows


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("pooling", ["last", "step", "prefix"])
def test_single_pass_equals_per_prefix_on_causal_models(tmp_path, minilm, model_type, pooling):
    folder = tiny_causal_lm(model_type, tmp_path / model_type, minilm.path)
    data = [Trajectory(Q, STEPS + ["So 36 pens in all."]), Trajectory("What is 7 * 6?", ["7 * 6 = 42."])]
    single = Backbone(EmbedConfig(backbone=str(folder), pooling=pooling))
    prefix = Backbone(EmbedConfig(backbone=str(folder), pooling=pooling, mode="per_prefix"))
    assert single.single_pass and not prefix.single_pass
    a, rows_a = float32_steps(single, data)
    b, rows_b = float32_steps(prefix, data)
    assert (rows_a, rows_b) == (2, 4)  # one row per solution vs one per step
    for x, y in zip(a, b):
        assert np.abs(x - y).max() <= 1e-5 * np.abs(y).max()


def test_with_layer_shares_the_model_and_checks_the_index(minilm):
    other = minilm.with_layer(3)
    assert other.config.layer == 3 and other.fingerprint["layer"] == 3
    assert minilm.fingerprint["layer"] == -1 and other.tokenizer is minilm.tokenizer
    with pytest.raises(PrmkitError, match="layer 7 does not exist: the backbone has 6 layers"):
        minilm.with_layer(7)


def test_several_layers_in_one_pass_equal_each_layer_alone(minilm):
    data = [Trajectory(Q, STEPS)]
    both, _ = embed_trajectories(data, minilm.with_layer((2, -1)), progress=False)
    second, _ = embed_trajectories(data, minilm.with_layer(2), progress=False)
    last, _ = embed_trajectories(data, minilm, progress=False)
    assert both[0].shape == (2, 2 * 384)
    np.testing.assert_array_equal(both[0][:, :384], second[0])
    np.testing.assert_array_equal(both[0][:, 384:], last[0])



def test_single_pass_equals_per_prefix_when_contexts_are_cut(tmp_path, minilm):
    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    data = [Trajectory(Q, STEPS + ["So 36 pens in all, and that is the answer to the question."])]
    single = Backbone(EmbedConfig(backbone=str(folder), pooling="prefix", max_length=30))
    prefix = Backbone(EmbedConfig(backbone=str(folder), pooling="prefix", max_length=30,
                                  mode="per_prefix"))
    a, _ = float32_steps(single, data)
    b, _ = float32_steps(prefix, data)
    assert np.abs(a[0] - b[0]).max() <= 1e-5 * np.abs(b[0]).max()
    _, truncated = plan_rows(single, 0, single.tokenize(data[0].question, data[0].steps))
    assert truncated >= 1  # the case under test really cuts contexts


def test_single_pass_on_a_bidirectional_encoder_is_refused():
    with pytest.raises(PrmkitError, match="not a causal LM"):
        Backbone(EmbedConfig(backbone="minilm", mode="single_pass"))


def test_truncation_error_holds_for_steps_embedded_alone():
    strict = Backbone(EmbedConfig(backbone="minilm", context="none", max_length=8, truncation="error"))
    with pytest.raises(PrmkitError, match="1 steps are longer than the backbone allows"):
        embed_trajectories([Trajectory("q", ["one two three four five six seven eight", "ok"])],
                           strict, progress=False)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_forward_stops_at_the_read_layer_and_equals_the_full_forward(tmp_path, minilm,
                                                                      model_type):
    folder = tiny_causal_lm(model_type, tmp_path / model_type, minilm.path)
    backbone = Backbone(EmbedConfig(backbone=str(folder), layer=1, features="hidden"))  # of 2
    assert backbone.layers_run == 1
    ids = torch.tensor([backbone.tokenize(Q, STEPS).ids])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = backbone.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    ran = []
    blocks = [m for m in backbone.base_model.modules() if isinstance(m, torch.nn.ModuleList)][0]
    handle = blocks[1].register_forward_hook(lambda *_: ran.append(1))
    read, final = backbone.run(ids, mask)
    handle.remove()
    assert ran == [] and final is None  # layer 1 never ran
    torch.testing.assert_close(read, full.hidden_states[1], rtol=1e-6, atol=1e-6)
    # the last layer is the final-normed state, as hidden_states[-1] is
    read_last, _ = backbone.with_layer((1, -1)).run(ids, mask)
    torch.testing.assert_close(read_last[..., 32:], full.hidden_states[-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(read_last[..., 32:], full.last_hidden_state, rtol=1e-6, atol=1e-6)


def test_a_resumed_run_computes_the_same_bytes_with_shared_prefixes(tmp_path, minilm):
    # The shard plan depends on the input alone: a shard missing from the cache (never written,
    # as after a kill) is computed again exactly as the uninterrupted run computed it.
    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    backbone = Backbone(EmbedConfig(backbone=str(folder)))
    assert backbone.shares_prefixes
    data = [Trajectory(f"What is {a} * {b}?", [f"{a} * {b} = {a * b + slip}.",
                                              f"The answer is {a * b + slip}."])
            for a, b in ((3, 4), (5, 6), (7, 8)) for slip in (0, 1, 2)]
    cache = EmbeddingCache(tmp_path / "cache", backbone.fingerprint)
    first, report = embed_trajectories(data, backbone, cache, progress=False,
                                       shard_trajectories=4)
    assert report["shards"] == 3 and report["real_tokens"] < report["input_tokens"]
    manifests = sorted(cache.dir.glob("shard-*.json"))
    manifests[1].unlink()  # the middle shard was never written
    manifests[1].with_suffix(".npy").unlink()
    again, report = embed_trajectories(data, backbone, EmbeddingCache(tmp_path / "cache",
                                                                      backbone.fingerprint),
                                       progress=False, shard_trajectories=4)
    assert (report["shards"], report["computed"], report["cached"]) == (1, 4, 5)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_a_resumed_run_does_not_depend_on_rows_of_skipped_shards(tmp_path):
    # Steps embedded alone recur across shards; each shard computes its own rows, so the last
    # shard computed again after a kill is the same bytes as in the uninterrupted run.
    backbone = Backbone(EmbedConfig(backbone="minilm", context="none"))
    steps = ["Add them: 3 + 4 = 7.", "The answer is 7.", "Multiply: 3 * 4 = 12."]
    data = [Trajectory(f"Question {i}?", [steps[i % 3], steps[(i + 1) % 3], f"Step {i}."])
            for i in range(12)]
    cache = EmbeddingCache(tmp_path / "cache", backbone.fingerprint)
    first, _ = embed_trajectories(data, backbone, cache, progress=False, shard_trajectories=4)
    last = sorted(cache.dir.glob("shard-*.json"))[-1]
    last.unlink()
    last.with_suffix(".npy").unlink()
    again, report = embed_trajectories(data, backbone, EmbeddingCache(tmp_path / "cache",
                                                                      backbone.fingerprint),
                                       progress=False, shard_trajectories=4)
    assert (report["shards"], report["computed"]) == (1, 4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kill_after", [0, 1, 3, 5])
def test_a_run_killed_at_any_shard_resumes_to_the_same_bytes(tmp_path, minilm, kill_after):
    # Killed after `kill_after` published shards, with the next shard's data half-written:
    # the resumed run computes the rest exactly as the uninterrupted run did, to the bit.
    from conftest import make_rows

    folder = tiny_causal_lm("llama", tmp_path / "llama", minilm.path)
    backbone = Backbone(EmbedConfig(backbone=str(folder)))
    data = [Trajectory.from_dict(r) for r in make_rows(8)]  # 24 trajectories, 6 shards of 4

    class Killed(Exception):
        pass

    class DyingCache(EmbeddingCache):
        published = 0

        def put(self, items):
            if self.published == kill_after:
                (self.dir / ".shard-x.npy.half.tmp").write_bytes(b"\x93NUMPY half")
                raise Killed
            super().put(items)
            self.published += 1

    reference, _ = embed_trajectories(data, backbone, EmbeddingCache(tmp_path / "ref",
                                                                     backbone.fingerprint),
                                      progress=False, shard_trajectories=4)
    with pytest.raises(Killed):
        embed_trajectories(data, backbone, DyingCache(tmp_path / "c", backbone.fingerprint),
                           progress=False, shard_trajectories=4)
    again, report = embed_trajectories(data, backbone, EmbeddingCache(tmp_path / "c",
                                                                      backbone.fingerprint),
                                       progress=False, shard_trajectories=4)
    assert report["shards"] == 6 - kill_after
    for a, b in zip(reference, again):
        np.testing.assert_array_equal(a, b)
