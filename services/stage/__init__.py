"""Demoing models side by side: a round's lineup and snapshots (``lineup``), the run that streams every column
(``compare``), prompt decks (``decks``), and the session record with its HTML and JSON reports (``report``)."""
