"""What a step-level beam search costs the PRM, scored incrementally and by re-scoring prefixes.

Depth-8 beam searches (width 4, 4 expansions per beam) on held-out demo-world problems, with the
world's noisy solver writing steps and a PRM on SmolLM2 read in context scoring them, run twice
side by side on the same problems:

* **incremental**: each beam keeps its prefix's key/value states (``PRM.extend``); a new step
  runs only its own tokens after them.
* **re-scoring**: every candidate's whole prefix is scored again at each depth
  (``scoring.rescore``, one ``score_batch`` call per depth, so prefixes shared within a depth
  are still run once by the prefix tree).

Printed: tokens through the backbone / (question + every generated step's tokens) for both, a
third figure for re-scoring without any sharing (each prefix alone: its token count), the wall
time of each, and how many searches chose the same solution both ways (scores agree to float
rounding, so ties may break apart).

    python bench/search.py                          # 20 problems, an untrained head (~3 min)
    python bench/search.py --model runs/demo/models/smollm2-in-context--both --problems 40
"""

from __future__ import annotations

import argparse
import time

import torch

from prmkit.embed import Backbone, EmbedConfig
from prmkit.model import PRMConfig, PRMHead
from prmkit.scoring import PRM
from prmkit.search import SearchConfig, beam_search
from prmkit.search_jobs import CompareConfig, held_out_problems, token_counter
from prmkit.generate.solver import SolverGenerator


class Rescoring:
    """A scorer that only scores whole solutions, counting the backbone's tokens."""

    threshold = None

    def __init__(self, prm: PRM):
        self.prm, self.tokens, self.alone_tokens = prm, 0, 0

    def score_batch(self, trajectories):
        probs = self.prm.score_batch(trajectories)
        report = self.prm.last_embed_report
        self.tokens += report["real_tokens"]
        self.alone_tokens += report["input_tokens"]
        return probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="a PRM folder (`prmkit train`); default: an untrained head on "
                             "SmolLM2 (token counts do not need a trained one)")
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--expansions", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model:
        prm = PRM.from_pretrained(args.model)
    else:
        backbone = Backbone(EmbedConfig(backbone="smollm2"))
        torch.manual_seed(0)
        prm = PRM(PRMHead(PRMConfig(input_dim=backbone.hidden_size, hidden_size=128,
                                    num_layers=2, num_heads=4, dropout=0.0)), backbone)
    config = SearchConfig(width=args.width, expansions=args.expansions, n=args.width,
                          max_depth=args.depth)
    problems = held_out_problems(CompareConfig(problems=args.problems))
    generator = SolverGenerator(problems)
    count = token_counter(prm)
    tokenizer_count = len(prm.backbone.prefix_ids)
    rescoring = Rescoring(prm)
    seconds = {"incremental": 0.0, "re-scoring": 0.0}
    base_tokens, scored_tokens, same, depths = 0, 0, 0, []
    for problem in problems:
        q = problem.question
        start = time.perf_counter()
        fast = beam_search(q, prm, generator, config, count)
        seconds["incremental"] += time.perf_counter() - start
        start = time.perf_counter()
        slow = beam_search(q, rescoring, generator, config, count)
        seconds["re-scoring"] += time.perf_counter() - start
        # the denominator: the question (with the backbone's leading special tokens) and
        # every generated step with its separator, in the backbone's tokens
        question = tokenizer_count + count(q + prm.backbone.config.separator)
        base_tokens += question + fast.generated_tokens
        scored_tokens += question + fast.scored_tokens
        same += fast.chosen.steps == slow.chosen.steps
        depths.append(max(len(b.steps) for b in fast.finished))
    incremental = prm.incremental_stats.real_tokens
    print(f"{len(problems)} problems, beam width {args.width} x {args.expansions} expansions, "
          f"max depth {args.depth} (deepest beam reached: median "
          f"{sorted(depths)[len(depths) // 2]}, max {max(depths)})")
    print(f"question + generated step tokens: {base_tokens} (question + the steps scored, "
          f"equal steps from one beam pruned first: {scored_tokens})")
    print(f"incremental : {incremental:>8} tokens through the backbone = "
          f"{incremental / base_tokens:.2f} x ({incremental / scored_tokens:.2f} x the scored)"
          f"   {seconds['incremental']:.1f} s")
    print(f"re-scoring  : {rescoring.tokens:>8} tokens through the backbone = "
          f"{rescoring.tokens / base_tokens:.2f} x   {seconds['re-scoring']:.1f} s")
    print(f"  (each prefix alone, no sharing: {rescoring.alone_tokens / base_tokens:.2f} x)")
    print(f"wall time re-scoring / incremental: "
          f"{seconds['re-scoring'] / seconds['incremental']:.2f}x; same chosen solution "
          f"{same}/{len(problems)}")


if __name__ == "__main__":
    main()
