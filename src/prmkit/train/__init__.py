"""Training the PRM head on cached step embeddings: the loop (``loop.py``), checkpoints
(``checkpoint.py``) and the reference spec's tricks (``tricks.py``)."""

from prmkit.train.checkpoint import CHECKPOINT_NAME
from prmkit.train.loop import (SUMMARY_NAME, TrainConfig, check_out_dir, evaluate,
                               model_folder_for, read_training, split_by_question, step_logits,
                               train, training_labels)

__all__ = ["CHECKPOINT_NAME", "SUMMARY_NAME", "TrainConfig", "check_out_dir", "evaluate",
           "model_folder_for", "read_training", "split_by_question", "step_logits", "train",
           "training_labels"]
