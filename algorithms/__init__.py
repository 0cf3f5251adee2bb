"""Shared algorithms: pure functions and models over numpy, Arrow and torch.

Nothing here reads the lake, starts Spark or knows about releases; every layer above
(jobs, training, evaluation, the release layer) calls these. Offers :mod:`~algorithms.cf`
(collaborative-filtering models), :mod:`~algorithms.topk` (exact top-k selection),
:mod:`~algorithms.segments` (user segments), :mod:`~algorithms.window` (a date's training
and holdout windows) and :mod:`~algorithms.ranker` (the ranker's model, features, encoder
and exported artifact).
"""
