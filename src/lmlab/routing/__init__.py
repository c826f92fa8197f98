"""Model embeddings and routing (EmbedLLM): correctness matrices, routers, and an in-house model zoo.

``ROUTERS`` maps a name to a :class:`~lmlab.routing.base.Router` class, one file and one line each.
"""

from lmlab.registry import Registry

ROUTERS = Registry("router", {
    "embedllm": "lmlab.routing.embedllm:EmbedLLMRouter",
    "knn": "lmlab.routing.knn:KNNRouter",
    "mf": "lmlab.routing.mf:MatrixFactorizationRouter",
    "single-best": "lmlab.routing.single_best:SingleBestRouter",
    "random": "lmlab.routing.random_router:RandomRouter",
    "oracle": "lmlab.routing.oracle:OracleRouter",
})
