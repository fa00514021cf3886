"""The product studio: five tasks over product data, one product or a whole supplier file.

In the order a product goes through them: ``tasks`` (what each task reads and its parameters),
``templates`` (versioned prompt files with few-shot examples), ``taxonomy`` (the categories a classification
is given), ``sentences`` (where sentences end), ``repair`` (the deterministic fixes of small models' habits,
each recorded), ``checks`` (what every output must pass), ``engine`` (one product through one task, with
retries that say what was wrong; ``backoff`` for transient backend errors), ``tabular`` (bounded CSV/XLSX
in and out), ``batch_store``, ``fleet`` (a backend's lane, the plan of who holds the model), ``runner``,
``scheduler`` (the fair queue and takeovers), ``batch`` and ``batch_read`` (a whole file as a server-side job
spread over backends, held by a lease, surviving restarts and a second process), ``cli``
(``python -m services.studio``, the same engine headless).
"""
