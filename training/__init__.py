"""The ranker: torchrec DLRM / DCN-v2 over candidate features, trained, exported, scored.

- :mod:`training.features`: :class:`FeatureSpec` (sparse and dense columns, in one place)
  and :func:`candidate_feature_spec`, the candidate-based example columns.
- :mod:`training.batch`: :class:`RankerBatch`, the batch format (dense (B, F_dense),
  sparse KeyedJaggedTensor, labels (B,), weights (B,)).
- :mod:`training.id_maps`, :mod:`training.normalize`, :mod:`training.encoder`: id -> bucket
  maps (bucket 0 for unseen ids), dense statistics, and :class:`FeatureEncoder` turning Arrow
  record batches into batches.
- :mod:`training.data`: streams of record batches from Parquet or tables, shuffled.
- :mod:`training.model`: :class:`ModelConfig`, :class:`RankerModel`, :func:`build_model`.
- :mod:`training.train`: :func:`train` (Adam + in-backward sparse optimizer, weighted BCE,
  early stopping on validation AUC, bf16); :mod:`training.sharded`: the DMP path.
- :mod:`training.scoring`: :func:`score`, :func:`predict`, :func:`ctr_metrics`.
- :mod:`training.export`: :func:`export_ranker`, :func:`load_ranker`, :func:`log_to_mlflow`.
- :mod:`training.pipeline`: :func:`fit_ranker` from Parquet or table sources.
- :mod:`training.cli`: ``recpipe ranker train|score``.

Submodules import torch and torchrec; import them where needed (this package imports
nothing heavy).
"""
