"""Watching the fleet: the prober (``probe``), its SQLite history (``history``), the ``/metrics`` exporter
(``exporter``), the Prometheus panels (``prometheus``), and ``service``, which wires them for the process."""
