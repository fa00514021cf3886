"""Talking to Ollama: the client, its streams and what they carry.

- ``wire``: typed values (model names, keep-alive, ``/api/tags`` and ``/api/ps`` entries, a stream line, the
  final line's counters).
- ``ndjson``: an open NDJSON response, and where httpx's exceptions become the dashboard's.
- ``client``: ``OllamaClient``, one httpx client per backend with the page, load and stall timeouts.
- ``stream``: the one stream collector (text, first token, chunks, final line, truncation, metrics), the
  reader thread and the coalesced page updates.
- ``options``: generation options and the seed's presets.

It imports nothing of ``access``: credentials are injected where clients are built (``services.connections``).
"""
