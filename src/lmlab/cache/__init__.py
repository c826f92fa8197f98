"""Semantic prompt caching with a distilled reuse model (Zhu, Zhu & Jiao 2024, arXiv 2402.01173).

- :mod:`lmlab.cache.data`: hard question pairs and query streams from a bundled knowledge base;
- :mod:`lmlab.cache.store`: :class:`SemanticCache` (SQLite WAL entries + FAISS index, namespaces, TTL, LRU);
- :mod:`lmlab.cache.redis_store`: the same cache over a Redis entry store (several nodes), ``open_cache``;
- :mod:`lmlab.cache.distill`: BCE / squared-log-difference fine-tuning of a sentence embedder;
- :mod:`lmlab.cache.simulate`: caching simulation, threshold sweeps, ``target_error`` calibration;
- :mod:`lmlab.cache.peers`: GPTCache's own pipeline as a peer (imported only when asked for).
"""

from lmlab.cache.embedders import CacheEmbedder, HashingEmbedder, RandomEmbedder, STEmbedder, load_st_embedder
from lmlab.cache.redis_store import RedisSemanticCache, open_cache
from lmlab.cache.store import CacheError, Hit, Namespace, SemanticCache

__all__ = ["CacheEmbedder", "CacheError", "HashingEmbedder", "Hit", "Namespace", "RandomEmbedder", "RedisSemanticCache",
           "STEmbedder", "SemanticCache", "load_st_embedder", "open_cache"]
