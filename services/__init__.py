"""Everything that is not UI, grouped by capability. Never imports streamlit.

At the top: ``errors`` (the one exception tree), ``config`` (settings and backends), ``format`` (sizes,
durations, rates), ``metrics`` (the process's Prometheus registry), ``resources`` (files the app reads),
``db`` (the SQLite file), ``connections`` (clients with each backend's credentials), ``safe_text``,
``uploads`` and ``images`` (untrusted text, documents and pictures). The packages: ``ollama`` (talking to
Ollama), ``access`` (who may do what), ``chat`` (the playground's conversations, kept per person),
``models`` (model management, pulls and Save as model), ``studio`` (the product studio's tasks and
batches), ``monitoring`` (probes, history, exporter, panels), ``stage`` (side-by-side demos).
"""
