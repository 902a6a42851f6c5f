"""The judge: reading verdicts, templates, and labels from a model served on 127.0.0.1."""

import pytest

from prmkit.errors import PrmkitError
from prmkit.generate.openai_http import OpenAIGenerator
from prmkit.label.judge import (default_template, judge_prompt, label_judge, parse_verdict,
                                read_template)
from prmkit.records import Trajectory
from test_generate import _choices, _Endpoint


@pytest.mark.parametrize("reply, verdict", [
    ("Yes", True), ("No", False), ("**No**.", False), ("yes, it is", True),
    ("Verdict: incorrect", False), ("Answer: Correct", True),
    ("The step is not correct because 3 + 4 is 7.", False),
    ("This isn't right.", False), ("Correct!", True), ("The arithmetic is wrong.", False),
    ("There is an error in the sum.", False), ("It is true that 2 + 2 = 4.", True),
    ("Let me think about it.", None), ("", None), ("12345", None),
    ("Yes. No wait.", True),                       # the first decisive word wins
    ("I think so. Verdict: No", False),            # an explicit verdict goes first
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_the_prompt_shows_the_step_and_what_came_before():
    t = Trajectory(question="What is 3 + 4?", steps=["3 + 4 = 7.", "The answer is 7."])
    prompt = judge_prompt(default_template(), t, 1)
    assert "What is 3 + 4?" in prompt and "1. 3 + 4 = 7." in prompt
    assert "Step 2 to check:\nThe answer is 7." in prompt
    assert "(none)" in judge_prompt(default_template(), t, 0)


def test_templates_are_checked(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Q: {question}\nS: {step}\nOK? {{yes/no}}")
    assert read_template(good).startswith("Q: {question}")
    for text, message in [("{step} {colour}", "unknown placeholder {colour}"),
                          ("{question} only", "never shows the step"),
                          ("{step", "not a template")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(PrmkitError, match=message):
            read_template(bad)
    with pytest.raises(PrmkitError, match="cannot read"):
        read_template(tmp_path / "missing.txt")


def test_judge_labels_until_the_first_no():
    t = Trajectory(question="Q", steps=["a", "b", "c", "d"])
    endpoint = _Endpoint([(200, _choices("Yes."), 0), (200, _choices("hmm, unsure"), 0),
                          (200, _choices("No, 2 + 2 is 4."), 0)])
    with endpoint as url:
        labelled = label_judge(t, 0, OpenAIGenerator(url, "judge", retries=0),
                               default_template())
    assert labelled.labels == [1.0, None, 0.0, None]  # step d is never asked about
    assert labelled.meta["labeling"]["verdicts"] == [True, None, False]
    assert len(endpoint.requests) == 3
    assert all(body["stop"] == ["\n\n"] and body["n"] == 1 for _, body, _ in endpoint.requests)
