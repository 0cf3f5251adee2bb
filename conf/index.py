"""Settings: FAISS index building (sharded HNSW), owned by serving_export/faiss."""

from __future__ import annotations

from conf.types import Section


class IndexSettings(Section):
    """FAISS index building (sharded HNSW), owned by serving_export/faiss."""
