"""FAISS shards over item vectors: numpy in, index directories out, memory-mapped back in.

- :mod:`~serving_export.index.shards`: :class:`ShardedIndex` (search, save, load);
- :mod:`~serving_export.index.build`: :func:`build_index` (build and tune from settings);
- :mod:`~serving_export.index.tuning`: exact search and ``efSearch`` tuning for a recall.

No lake and no release here: the release layer builds indexes into releases with it, the
service loads them, and the nightly's jobs may search them.
"""
