"""A comparison session: its rounds, the audience's votes, and its exports (JSON and offline HTML).

Every column of every round records what is needed to reproduce and prove it: model name and digest,
backend (name and kind), the backend's Ollama version, options, seed, the deck and prompt it came
from (the "template version"), and its timings. The JSON export (``ollama-dashboard-comparison/1``)
loads back as a replay: the same lineup, and one deck prompt per round with its exact system prompt,
options and seed.

The HTML export is one self-contained, printable file: every piece of text is escaped with
``html.escape``, it has no script, no external resource of any kind, and a Content-Security-Policy
that forbids them anyway (only its own stylesheet, pinned by hash, may apply).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from services import format as fmt
from services.config import Backend
from services.errors import InvalidInput
from services.ollama.wire import validate_model_name
from services.stage.decks import Deck, DeckPrompt, validate_options, validate_seed
from services.stage.lineup import MAX_MODELS, MIN_MODELS, SLOTS, ColumnSnapshot, Contestant, RoundSpec
from services.uploads import load_json_document

REPORT_FORMAT = "ollama-dashboard-comparison/1"
TIE = "tie"
MAX_REPORT_BYTES = 20_000_000


@dataclass(frozen=True)
class Source:
    """Where a round's prompt came from: a deck prompt (name, version, id) or typed by the presenter."""

    deck: str = ""
    deck_version: str = ""
    prompt_id: str = ""
    title: str = ""

    @property
    def template_version(self) -> str:
        if not self.deck:
            return "ad hoc"
        return f"{self.deck}@v{self.deck_version}#{self.prompt_id}"


@dataclass
class RoundRecord:
    """One prompt sent to the whole lineup, and what each column did with it."""

    index: int
    prompt: str
    system: str
    options: dict[str, Any]
    seed: int
    warm_up: bool
    source: Source = field(default_factory=Source)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    columns: list[dict[str, Any]] = field(default_factory=list)
    vote: str = ""
    # The lineup's slots in the order the columns are shown; in blind mode shuffled for every round, so the
    # audience's letters (A, B, ... by position) do not follow a model from one round to the next.
    order: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.columns) and all(c.get("status") in ("done", "error", "stopped") for c in self.columns)

    def update(self, snapshots: Sequence[ColumnSnapshot]) -> None:
        self.columns = [s.as_dict() for s in snapshots]

    def spec(self) -> RoundSpec:
        return RoundSpec(prompt=self.prompt, system=self.system, options=self.options, seed=self.seed,
                         warm_up=self.warm_up)


@dataclass
class CompareSession:
    """What one presenter's browser session has run; lives in ``st.session_state``, exported on demand."""

    lineup: list[dict[str, str]]
    blind: bool = False
    revealed: bool = False
    rounds: list[RoundRecord] = field(default_factory=list)
    replay_of: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def for_contestants(cls, contestants: Sequence[Contestant], *, blind: bool) -> CompareSession:
        return cls(lineup=[{"slot": c.slot, "model": c.model, "backend": c.backend.name,
                            "backend_kind": c.backend.kind} for c in contestants], blind=blind)

    @property
    def hidden(self) -> bool:
        return self.blind and not self.revealed

    def display_name(self, slot: str, record: RoundRecord | None = None) -> str:
        """The model's name; while hidden, "Model X" with X the letter the audience saw in ``record``."""
        if self.hidden:
            return f"Model {self.letter(slot, record) if record is not None else slot}"
        entry = self.entry(slot)
        return entry["model"] if entry else f"Model {slot}"

    def order(self, record: RoundRecord) -> list[str]:
        """The lineup slots in the round's display order (lineup order for rounds recorded without one)."""
        slots = [e["slot"] for e in self.lineup]
        return list(record.order) if sorted(record.order) == sorted(slots) else slots

    def letter(self, slot: str, record: RoundRecord) -> str:
        """The letter the audience saw for ``slot`` in ``record``: its column's position."""
        order = self.order(record)
        return SLOTS[order.index(slot)] if slot in order else slot

    def slot_for_letter(self, letter: str, record: RoundRecord) -> str:
        order = self.order(record)
        index = SLOTS.index(letter) if letter in SLOTS else -1
        if not 0 <= index < len(order):
            raise InvalidInput(f"There is no column {letter!r} in round {record.index}.")
        return order[index]

    def entry(self, slot: str) -> dict[str, str] | None:
        return next((e for e in self.lineup if e["slot"] == slot), None)

    def contestants(self, backends: Sequence[Backend]) -> list[Contestant]:
        """The lineup bound to this dashboard's configured backends (by name)."""
        by_name = {b.name: b for b in backends}
        out = []
        for entry in self.lineup:
            backend = by_name.get(entry["backend"])
            if backend is None:
                known = ", ".join(sorted(by_name)) or "none"
                raise InvalidInput(f"Backend {entry['backend']!r} of model {entry['model']} is not configured "
                                   f"here (configured: {known}).")
            out.append(Contestant(entry["slot"], entry["model"], backend))
        return out

    def new_order(self) -> list[str]:
        """The lineup's slots in the order a new round shows them: shuffled afresh when blind."""
        order = [e["slot"] for e in self.lineup]
        if self.blind:
            random.SystemRandom().shuffle(order)  # the presenter's own order must not give the letters away
        return order

    def add_round(self, spec: RoundSpec, source: Source | None = None, *,
                  order: list[str] | None = None) -> RoundRecord:
        """A new round, its columns in ``order`` (default: a new one, see ``new_order``)."""
        if order is None:
            order = self.new_order()
        record = RoundRecord(index=len(self.rounds) + 1, prompt=spec.prompt, system=spec.system,
                             options=dict(spec.options), seed=int(spec.seed), warm_up=spec.warm_up,
                             source=source or Source(), order=order)
        self.rounds.append(record)
        return record

    def vote(self, round_index: int, choice: str) -> None:
        """Record (or change) the audience's preference for one round: a slot letter or ``tie``."""
        record = next((r for r in self.rounds if r.index == round_index), None)
        if record is None:
            raise InvalidInput(f"There is no round {round_index}.")
        if choice != TIE and self.entry(choice) is None:
            raise InvalidInput(f"{choice!r} is not one of the compared models.")
        record.vote = choice

    def tally(self) -> dict[str, int]:
        """Wins per slot, in lineup order (ties and unvoted rounds count for nobody)."""
        wins = {e["slot"]: 0 for e in self.lineup}
        for record in self.rounds:
            if record.vote in wins:
                wins[record.vote] += 1
        return wins

    def tally_by_model(self) -> dict[str, int]:
        return {self.display_name(slot): count for slot, count in self.tally().items()}

    def leaders(self) -> list[str]:
        """The slots with the most wins (several on a tie for the lead; none before the first win)."""
        tally = self.tally()
        best = max(tally.values(), default=0)
        return [slot for slot, wins in tally.items() if wins == best] if best else []

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "id": self.id,
            "created_at": self.created_at,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "replay_of": self.replay_of,
            "blind": self.blind,
            "revealed": self.revealed,
            "lineup": self.lineup,
            "rounds": [{**asdict(r), "template_version": r.source.template_version} for r in self.rounds],
            "tally": {e["model"]: self.tally()[e["slot"]] for e in self.lineup},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def replay_deck(self) -> Deck:
        """One deck prompt per round, with that round's exact system prompt, options and seed."""
        if not self.rounds:
            raise InvalidInput("This report has no rounds to re-run.")
        prompts = tuple(
            DeckPrompt(id=f"round-{r.index}", title=r.source.title or f"Round {r.index}", prompt=r.prompt,
                       system=r.system, options=dict(r.options), seed=r.seed)
            for r in self.rounds)
        return Deck(name=f"replay-{self.id}", title=f"Replay of session {self.id}", version=self.created_at,
                    prompts=prompts, description="Re-run of an exported comparison.", source="report")


def _require(document: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = document.get(key)
    if not isinstance(value, kind):
        raise InvalidInput(f"The report's {what} is missing or malformed.")
    return value


def parse_report(data: str | bytes) -> CompareSession:
    """Load an exported JSON report (for a re-run); every problem is a clear ``InvalidInput``."""
    document = load_json_document(data, what="The report", max_bytes=MAX_REPORT_BYTES)
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise InvalidInput(f"This is not a comparison report (expected \"format\": \"{REPORT_FORMAT}\").")
    raw_lineup = _require(document, "lineup", list, "lineup")
    if not MIN_MODELS <= len(raw_lineup) <= MAX_MODELS:
        raise InvalidInput(f"The report's lineup must have {MIN_MODELS} to {MAX_MODELS} models.")
    lineup = []
    for slot, entry in zip(SLOTS, raw_lineup, strict=False):
        if not isinstance(entry, dict):
            raise InvalidInput("The report's lineup is malformed.")
        model = validate_model_name(str(entry.get("model", "")))
        backend = str(entry.get("backend") or "")
        if not backend:
            raise InvalidInput(f"The report does not say which backend ran {model}.")
        lineup.append({"slot": slot, "model": model, "backend": backend,
                       "backend_kind": str(entry.get("backend_kind") or "")})
    rounds = []
    for index, raw in enumerate(_require(document, "rounds", list, "rounds"), start=1):
        where = f"Round {index}"
        if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str) or not raw["prompt"].strip():
            raise InvalidInput(f"{where} of the report has no prompt.")
        options = validate_options(raw.get("options") or {}, where)
        seed = validate_seed(raw.get("seed"), where)
        source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        vote = str(raw.get("vote") or "")
        slots = [e["slot"] for e in lineup]
        order = [str(s) for s in raw.get("order") or []] if isinstance(raw.get("order"), list) else []
        rounds.append(RoundRecord(
            index=index, prompt=raw["prompt"], system=str(raw.get("system") or ""), options=options,
            seed=42 if seed is None else seed, warm_up=bool(raw.get("warm_up", True)),
            source=Source(**{k: str(source.get(k) or "") for k in ("deck", "deck_version", "prompt_id", "title")}),
            started_at=str(raw.get("started_at") or ""),
            columns=[c for c in raw.get("columns") or [] if isinstance(c, dict)],
            vote=vote if vote == TIE or vote in SLOTS[: len(lineup)] else "",
            order=order if sorted(order) == sorted(slots) else slots,
        ))
    return CompareSession(lineup=lineup, blind=bool(document.get("blind")), revealed=bool(document.get("revealed")),
                          rounds=rounds, replay_of=str(document.get("replay_of") or ""),
                          id=str(document.get("id") or uuid.uuid4().hex[:12]),
                          created_at=str(document.get("created_at") or ""))


# ---- HTML ----------------------------------------------------------------------------------------
_CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:2rem auto;
max-width:1400px;padding:0 1.5rem}
h1{font-size:1.8rem;margin:0 0 .25rem}h2{font-size:1.3rem;margin:2rem 0 .5rem;border-top:2px solid #e5e7eb;
padding-top:1rem}h3{font-size:1.05rem;margin:0 0 .35rem}
.muted{color:#6b7280}table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #e5e7eb;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f4f6}.num{text-align:right;font-variant-numeric:tabular-nums}
.prompt,.out{white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,"DejaVu Sans Mono",monospace;
font-size:13px}
.prompt{background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;padding:.6rem .8rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:.8rem;margin-top:.6rem}
.col{border:1px solid #d1d5db;border-radius:8px;padding:.7rem .8rem;break-inside:avoid}
.col.winner{border:3px solid #16a34a}.figs{font-size:13px;margin:.2rem 0 .5rem}
.badge{display:inline-block;border-radius:4px;padding:0 .35rem;font-size:12px;font-weight:600}
.done{background:#dcfce7;color:#166534}.error{background:#fee2e2;color:#991b1b}
.stopped{background:#fef3c7;color:#92400e}.cold{background:#e0e7ff;color:#3730a3}
.err{color:#991b1b}
@media print{body{margin:0;max-width:none;font-size:11px}.col{page-break-inside:avoid}
h2{page-break-before:auto;page-break-after:avoid}}
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; font-src 'none'; "
            "script-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _seconds(value: Any, digits: int = 2) -> str:
    return fmt.seconds(float(value), digits) if isinstance(value, int | float) else fmt.MISSING


def _column_html(column: Mapping[str, Any], name: str, winner: bool, shown_as: str = "") -> str:
    status = str(column.get("status") or "")
    stats = column.get("stats") or {}
    tps = column.get("tokens_per_second")
    figures = [f"first token {_seconds(column.get('first_token_s'))}",
               f"{tps:.1f} tokens/s" if isinstance(tps, int | float) else "tokens/s –"]
    if stats.get("eval_count"):
        figures.append(f"{int(stats['eval_count'])} tokens")
    if stats.get("total_duration"):
        figures.append(f"total {_seconds(stats['total_duration'] / 1e9)}")
    badges = [f'<span class="badge {_e(status)}">{_e(status)}</span>']
    if column.get("cold_start"):
        badges.append(f'<span class="badge cold">cold start: load {_seconds(column.get("load_s"), 1)}</span>')
    if isinstance(column.get("warmup_s"), int | float):
        figures.append(f"warmed up first ({_seconds(column['warmup_s'], 1)}, not timed)")
    digest = str(column.get("digest") or "").removeprefix("sha256:")[:12]
    parts = [
        f'<div class="col{" winner" if winner else ""}">',
        f"<h3>{_e(column.get('slot'))} · {_e(name)}{' · audience pick' if winner else ''}</h3>",
        f'<div class="muted figs">shown as Model {_e(shown_as)}</div>' if shown_as else "",
        f'<div class="muted figs">{_e(column.get("backend"))} · Ollama {_e(column.get("ollama_version") or "?")}'
        f" · digest {_e(digest or '?')}</div>",
        f'<div class="figs">{" ".join(badges)} {_e(" · ".join(figures))}</div>',
    ]
    if column.get("error"):
        parts.append(f'<p class="err">{_e(column["error"])}</p>')
    if column.get("thinking"):
        parts.append(f'<p class="muted">Thinking:</p><div class="out muted">{_e(column["thinking"])}</div>')
    parts.append(f'<div class="out">{_e(column.get("content") or "(no text)")}</div></div>')
    return "\n".join(parts)


def render_html(session: CompareSession) -> str:
    """The whole session as one offline, printable HTML page (model names always shown: it is the record)."""
    names = {e["slot"]: e["model"] for e in session.lineup}
    tally = session.tally()
    exported = datetime.now(UTC).isoformat(timespec="seconds")
    blind = ""
    if session.blind:
        blind = " · blind session" + (" (revealed)" if session.revealed else " (not yet revealed)")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Model comparison {_e(session.id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Model comparison</h1>",
        f'<p class="muted">Session {_e(session.id)} · started {_e(session.created_at)} · exported {_e(exported)}'
        f"{' · replay of ' + _e(session.replay_of) if session.replay_of else ''}"
        f"{blind}</p>",
        "<h2>Lineup and audience tally</h2>",
        "<table><tr><th>Slot</th><th>Model</th><th>Backend</th><th>Digest</th><th>Ollama</th>"
        '<th class="num">Wins</th></tr>',
    ]
    first_columns = {c.get("slot"): c for r in session.rounds for c in reversed(r.columns)}
    for entry in session.lineup:
        seen = first_columns.get(entry["slot"], {})
        digest = str(seen.get("digest") or "").removeprefix("sha256:")[:12]
        out.append(f"<tr><td>{_e(entry['slot'])}</td><td>{_e(entry['model'])}</td>"
                   f"<td>{_e(entry['backend'])} ({_e(entry.get('backend_kind'))})</td><td>{_e(digest or '?')}</td>"
                   f"<td>{_e(seen.get('ollama_version') or '?')}</td>"
                   f'<td class="num">{tally.get(entry["slot"], 0)}</td></tr>')
    ties = sum(1 for r in session.rounds if r.vote == TIE)
    unvoted = sum(1 for r in session.rounds if not r.vote)
    out.append(f"</table><p class=\"muted\">{fmt.count(len(session.rounds), 'round')} · {fmt.count(ties, 'tie')} · "
               f"{unvoted} without a vote</p>")
    for record in session.rounds:
        winner = record.vote
        verdict = ("tie" if winner == TIE else f"{winner} · {names.get(winner, '?')}") if winner else "no vote"
        options = json.dumps({**record.options, "seed": record.seed}, sort_keys=True, ensure_ascii=False)
        out += [
            f"<h2>Round {record.index}{': ' + _e(record.source.title) if record.source.title else ''}</h2>",
            f'<p class="muted">{_e(record.started_at)} · template {_e(record.source.template_version)} · '
            f"options {_e(options)} · warm-up {'on' if record.warm_up else 'off'} · "
            f"audience pick: {_e(verdict)}</p>",
        ]
        if record.system:
            out.append(f'<p class="muted">System prompt:</p><div class="prompt">{_e(record.system)}</div>')
        out.append(f'<p class="muted">Prompt:</p><div class="prompt">{_e(record.prompt)}</div><div class="grid">')
        for column in record.columns:
            slot = str(column.get("slot") or "")
            shown_as = session.letter(slot, record) if session.blind else ""
            out.append(_column_html(column, names.get(slot, str(column.get("model") or "?")), slot == winner,
                                    shown_as))
        out.append("</div>")
    out.append('<p class="muted">Generated by the Ollama operator dashboard. Model output above is shown as '
               "plain text, exactly as the models wrote it.</p></body></html>")
    return "\n".join(out) + "\n"
