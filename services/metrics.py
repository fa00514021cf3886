"""Process-wide Prometheus metrics for every generation the dashboard makes.

Defined once at import in a registry of our own, so Streamlit reruns never register a metric twice.
Names follow the seed: ``ai_requests_total{status,model}`` and ``ai_request_duration_seconds{model}``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

AI_REQUESTS = Counter(
    "ai_requests_total",
    "Generations made by the dashboard, by outcome (success, error, stopped) and model.",
    ["status", "model"],
    registry=REGISTRY,
)
AI_REQUEST_DURATION = Histogram(
    "ai_request_duration_seconds",
    "Wall time of a generation as the dashboard saw it, from request to last token.",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
AI_TIME_TO_FIRST_TOKEN = Histogram(
    "ai_time_to_first_token_seconds",
    "Time from request to the first streamed token, measured in the dashboard.",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
AI_TOKENS = Counter(
    "ai_tokens_total",
    "Tokens reported by Ollama's final counters: kind=prompt (prompt_eval_count) or completion (eval_count).",
    ["model", "kind"],
    registry=REGISTRY,
)


def record_generation(*, model: str, status: str, duration_s: float, ttft_s: float | None,
                      prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
    """Count one generation; called exactly once per request, whatever its outcome (by the stream collector).

    Token counts are Ollama's own (``prompt_eval_count``, ``eval_count``), known only when the final line came.
    """
    AI_REQUESTS.labels(status=status, model=model).inc()
    AI_REQUEST_DURATION.labels(model=model).observe(max(duration_s, 0.0))
    if ttft_s is not None:
        AI_TIME_TO_FIRST_TOKEN.labels(model=model).observe(ttft_s)
    if prompt_tokens or completion_tokens:
        AI_TOKENS.labels(model=model, kind="prompt").inc(prompt_tokens)
        AI_TOKENS.labels(model=model, kind="completion").inc(completion_tokens)


def sample(name: str, labels: dict[str, str]) -> float:
    """Current value of one sample (0 when absent); for tests and the page's own counters."""
    value = REGISTRY.get_sample_value(name, labels)
    return float(value) if value is not None else 0.0
