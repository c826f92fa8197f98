"""Prometheus metrics of the gateway (prometheus-client).

One set of metric objects per process. With ``PROMETHEUS_MULTIPROC_DIR`` set (``lmlab serve --workers N`` sets
it before the workers start), prometheus-client writes every value to files in that directory and ``/metrics``
merges all workers' files (its multiprocess mode); gauges then sum the live workers' values.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()
_METRICS: Metrics | None = None

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = None if multiprocess() else CollectorRegistry()
        r = {"registry": self.registry}
        self.requests = Counter("lmlab_requests", "Requests answered, by endpoint, status code and tenant",
                                ["endpoint", "status", "tenant"], **r)
        self.latency = Histogram("lmlab_request_seconds", "Request latency (to the last byte for streams)",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, **r)
        self.stage = Histogram("lmlab_stage_seconds", "Time in each pipeline stage", ["stage"],
                               buckets=LATENCY_BUCKETS, **r)
        self.cache = Counter("lmlab_cache", "Cache decisions: hit_exact, hit_semantic, miss, stored, bypass",
                             ["result"], **r)
        self.wrong_hits = Counter("lmlab_cache_wrong_hit_reports", "Cached answers reported wrong by clients", **r)
        self.guard = Counter("lmlab_guard", "Input guard decisions: pass, flagged", ["result"], **r)
        self.injection = Counter("lmlab_injection", "Untrusted-content handling: marked, flagged, blocked",
                                 ["result"], **r)
        self.routes = Counter("lmlab_route", "Backend chosen per generated answer, and how", ["backend", "by"], **r)
        self.tokens = Counter("lmlab_completion_tokens", "Generated tokens per backend", ["backend"], **r)
        self.queue = Gauge("lmlab_queue_depth", "Requests waiting or decoding per backend", ["backend"],
                           multiprocess_mode="livesum", **r)
        self.inflight = Gauge("lmlab_inflight", "Requests in progress", multiprocess_mode="livesum", **r)
        self.shed = Counter("lmlab_shed", "Requests refused for load: rate_limit, overload, queue_full", ["reason"], **r)
        self.upstream_failures = Counter("lmlab_upstream_failures", "Failed upstream attempts", ["backend", "reason"],
                                         **r)
        self.circuit = Gauge("lmlab_circuit_open", "1 while a backend's circuit breaker is open", ["backend"],
                             multiprocess_mode="livemax", **r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess as mp

        reg = CollectorRegistry()
        mp.MultiProcessCollector(reg)
        return generate_latest(reg), CONTENT_TYPE_LATEST


def get_metrics() -> Metrics:
    """This process's metrics (created on first use: metric names can be registered once per process)."""
    global _METRICS
    with _LOCK:
        if _METRICS is None:
            _METRICS = Metrics()
        return _METRICS


def mark_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)


__all__ = ["Metrics", "get_metrics", "mark_dead", "multiprocess"]
