import pytest

from prmkit.embed import Backbone, EmbedConfig, embed_trajectories
from prmkit.embed.rows import BATCH_OVERHEAD_TOKENS, plan_batches, plan_rows, run_rows
from prmkit.errors import PrmkitError
from prmkit.records import Trajectory

Q = "A shop sells 3 boxes of 12 pens. How many pens?"
STEPS = ["3 boxes of 12 pens is 3 * 12 = 36 pens.", "The answer is 36."]


def test_left_truncation_keeps_the_current_step_and_is_counted():
    backbone = Backbone(EmbedConfig(backbone="minilm", max_length=24))
    long_q = "word " * 40
    feats, report = embed_trajectories([Trajectory(long_q, ["a short step.", "another one."])],
                                       backbone, progress=False)
    assert report["truncated_steps"] == 2
    assert feats[0].shape == (2, 384)
    # the window keeps the current step whole, at its end, after a left-cut context
    tokens = backbone.tokenize(long_q, ["a short step.", "another one."])
    job = plan_rows(backbone, 0, tokens)[0][1]  # the second step's window
    step_ids = list(tokens.ids[tokens.starts[1]:tokens.ends[1]])
    assert len(job.input_ids) == 24 and job.input_ids[-len(step_ids) - 1:-1] == step_ids
    (_, start, end), = job.spans
    assert job.input_ids[start:end] == step_ids
    strict = Backbone(EmbedConfig(backbone="minilm", max_length=24, truncation="error"))
    with pytest.raises(PrmkitError, match="the backbone allows 24"):
        embed_trajectories([Trajectory(long_q, ["a short step."])], strict, progress=False)


def test_batches_minimize_padding_plus_a_cost_per_batch():
    assert BATCH_OVERHEAD_TOKENS == 256
    # lengths 10 10 11 20 21 | 100, each batch costing 256 + rows x longest:
    #   one batch:             256 + 6 x 100                      = 856
    #   [10 10 11 20 21][100]: 256 + 5 x 21 + 256 + 100            = 717  (the least)
    #   [10 10 11][20 21][100]: 3 x 256 + 3 x 11 + 2 x 21 + 100    = 943
    assert plan_batches([100, 10, 21, 10, 11, 20], 8192) == [[1, 3, 4, 5, 2], [0]]
    # at most 3 rows of 10 per batch (4 x 10 > 30); every split costs 552: the first is kept
    assert plan_batches([10, 10, 10, 10], 30) == [[0], [1, 2, 3]]
    # rows longer than the budget still run, one per batch
    assert plan_batches([40, 50], 30) == [[0], [1]]


def test_forward_reports_each_batch_for_progress_bars(minilm):
    tokens = minilm.tokenize(Q, STEPS)
    jobs, _ = plan_rows(minilm, 0, tokens)
    seen = []
    run_rows(minilm, jobs, on_batch=lambda steps, n: seen.append((steps, n)))
    assert sum(steps for steps, _ in seen) == 2  # one row per step, each seen once
    # per prefix: the rows are [CLS] q s0 [SEP] and [CLS] q s0 s1 [SEP]
    assert sum(n for _, n in seen) == (2 + tokens.ends[0]) + (2 + tokens.ends[1])
