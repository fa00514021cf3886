"""Who may do what: people's sign-in tokens, roles and the page registry, the acting identity, gateway tokens,
the startup checks and the audit log.

- ``roles``: viewer < operator < admin, and ``require`` for every action.
- ``pages``: every page and the least role that may open it, declared once.
- ``tokens``: verifying (and, with a shared secret, minting) people's JWTs.
- ``acting``: who is acting on this thread, for a gateway token.
- ``gateway``: one short-lived JWT per request to the company gateway.
- ``startup``: the checks every start runs (keys, open mode on loopback only, files present).
- ``audit``: the append-only log of model operations.
- ``__main__``: ``python -m services.access mint|verify|secret``.
"""
