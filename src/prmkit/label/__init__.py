"""Step labels from cheap sources: the outcome, an arithmetic checker, Monte-Carlo rollouts and
a judge model (``job.py`` runs any of them over a file, resumably)."""
