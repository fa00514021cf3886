"""Model management on a backend: load, unload, copy and delete (each audited), rows for the tables, model
details from ``/api/show``, pulls as server-side jobs (``pulls``, progress in ``pull_progress``), and Save as
model through ``/api/create`` (``create``)."""
