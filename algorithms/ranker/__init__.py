"""The ranker as a model: what training fits and what the precompute applies.

Shapes: B rows in a batch, F_s sparse features, F_d dense features, D embedding size.

- :mod:`~algorithms.ranker.features`: the feature spec (names, table sizes, transforms);
- :mod:`~algorithms.ranker.id_maps`, :mod:`~algorithms.ranker.normalize`,
  :mod:`~algorithms.ranker.encoder`: raw Arrow columns -> :class:`RankerBatch` tensors;
- :mod:`~algorithms.ranker.model`: the torchrec DLRM / DCN-v2 network;
- :mod:`~algorithms.ranker.scoring`: batched inference;
- :mod:`~algorithms.ranker.artifact`: reading and loading an exported ranker.

Importing this package imports no torch; its modules do.
"""
