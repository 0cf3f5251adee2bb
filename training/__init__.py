"""Training the ranker: labelled examples from earlier nights, the training loop, export.

The model itself (features, encoder, network, inference, the exported artifact) lives in
:mod:`algorithms.ranker`, shared with the precompute that applies it.

- :mod:`training.examples`: ``recpipe ranker examples``, labelled examples of a date.
- :mod:`training.data`: streams of record batches from Parquet or tables, shuffled.
- :mod:`training.train`: :func:`train` (Adam + in-backward sparse optimizer, weighted BCE,
  early stopping on validation AUC, bf16); :mod:`training.sharded`: the DMP path.
- :mod:`training.export`: :func:`export_ranker`, :func:`log_to_mlflow`.
- :mod:`training.pipeline`: :func:`fit_ranker` from Parquet or table sources.
- :mod:`training.cli`: ``recpipe ranker examples|train|score``.

Submodules import torch and torchrec; import them where needed (this package imports
nothing heavy).
"""
