"""Yield of the product studio on small models' real habits: usable rows and requests per row, repair off vs on.

The stand-in's ``small_models`` profile (tests/profiles/small_models.py, odds written there) answers 200
products per task: descriptions, classification, extraction. Each task runs twice through ``run_task``
(four workers, as a batch would):

- off: today's engine: the v1 templates, no repair, the same prompt again after a failed check;
- on: the current templates (few-shot, derived num_predict, stops), repair, retry with feedback;
- on, odds x2: the same with every habit twice as likely (a rougher model than the profile's).

Usable = kept by the engine AND passing an independent audit of the brief (no preamble, quotes, Markdown,
hashtags or closing remark; within the sentence and character limits; the language asked; a real
category; JSON of the schema). "Kept but breaks the brief" counts rows the engine kept that the audit
refuses: the target is none. Requests per row count every /api/chat request the stand-in saw.
Targets with repair on: >= 95 % usable, 0 kept breaking the brief, <= 1.3 requests per row.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from services import format as fmt
from services.config import Backend
from services.ollama.client import OllamaClient
from services.studio.checks import default_taxonomy, guess_language
from services.studio.engine import TaskResult, run_task
from services.studio.sentences import count_sentences
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.profiles.small_models import SmallModelResponder
from tests.standin import StandinServer

ROWS = 200
WORKERS = 4
PARAMS = {"description": TaskParams(), "classification": TaskParams(check_language=False),
          "extraction": TaskParams(check_language=False)}
KINDS = [("robe", "Robe", "soie"), ("jupe", "Jupe", "coton"), ("veste", "Veste", "laine"),
         ("manteau", "Manteau", "laine"), ("chemisier", "Chemisier", "soie"), ("pantalon", "Pantalon", "lin"),
         ("sac", "Sac", "cuir"), ("collier", "Collier", "argent"), ("chaussures", "Escarpins", "cuir"),
         ("écharpe", "Écharpe", "cachemire")]
COLOURS = ["noir", "bleu nuit", "rouge", "ivoire", "vert sauge", "camel", "bordeaux", "gris"]
APPLIANCES = [("Bouilloire", "1,7 L", "2200 W", "inox"), ("Cafetière", "1,2 L", "1000 W", "verre"),
              ("Grille-pain", "2 fentes", "850 W", "plastique"), ("Blender", "1,5 L", "600 W", "verre")]


def products(task: str, rows: int = ROWS) -> list[dict[str, str]]:
    out = []
    for i in range(rows):
        kind, name, material = KINDS[i % len(KINDS)]
        colour = COLOURS[(i // len(KINDS)) % len(COLOURS)]
        if task == "description":
            out.append({"product_type": kind, "name": f"{name} {chr(65 + i % 26)}{i:03d}", "colour": colour,
                        "material": material, "occasion": ["soirée", "quotidien", "mariage"][i % 3]})
        elif task == "classification":
            out.append({"name": f"{name} {colour} en {material} réf. {i:03d}",
                        "description": f"{kind.capitalize()} {colour}, {material}."})
        else:
            app, capacity, power, mat = APPLIANCES[i % len(APPLIANCES)]
            out.append({"text": f"{app} n° {i:03d} en {mat}, {capacity}, {power}, hauteur {20 + i % 10} cm, "
                                f"poids env. 1,{i % 9} kg. Ne pas immerger."})
    return out


# ---- an audit of the brief, independent of the repair code ------------------------------------------

_HABITS_RE = re.compile(r"^\s*(voici|voilà|bien sûr|here is|sure)|[«»“”\"]|\*\*|__|^#|\s#\w|n['’]h[ée]sitez|"
                        r"feel free|```|<[a-z/]", re.IGNORECASE | re.MULTILINE)


def audit(task: str, output: str, params: TaskParams) -> str:
    """Why a kept output breaks the brief ('' when it does not)."""
    if task == "description":
        if _HABITS_RE.search(output):
            return f"habit left in: {_HABITS_RE.search(output).group(0)!r}"  # type: ignore[union-attr]
        if len(output) > params.max_chars:
            return f"{len(output)} characters"
        if count_sentences(output) > params.max_sentences:
            return f"{count_sentences(output)} sentences"
        if guess_language(output) not in (None, params.language):
            return "wrong language"
        if not output.rstrip().endswith((".", "!", "?", "…")):
            return "unfinished sentence"
        return ""
    if task == "classification":
        return "" if output in default_taxonomy() else "not a taxonomy path"
    value = json.loads(output)
    ok = isinstance(value, dict) and set(value) == {"specifications", "materials", "dimensions", "safety_info"} \
        and isinstance(value["materials"], list)
    return "" if ok else "JSON off the schema"


@dataclass
class Outcome:
    results: list[TaskResult] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    broken: list[tuple[TaskResult, str]] = field(default_factory=list)

    @property
    def usable(self) -> int:
        return sum(1 for r in self.results if r.ok) - len(self.broken)

    def row(self) -> str:
        n = len(self.results)
        repaired = sum(1 for r in self.results if r.status == "repaired")
        return (f"{fmt.percent(self.usable / n, 1):>7} usable ({self.usable}/{n}), {repaired:>3} after repair, "
                f"{len(self.broken):>3} kept breaking the brief, {self.requests / n:.2f} requests/row")


def run(task: str, mode: str, data_dir: Path, odds_scale: float = 1.0) -> Outcome:
    store = TemplateStore(data_dir)
    template = store.get(task, 1) if mode == "off" else store.latest(task)
    params = PARAMS[task]
    with StandinServer() as server:
        server.httpd.handle_error = lambda *_args: None  # type: ignore[method-assign]
        server.state.apply_profile("small_models")
        server.state.configure(tokens_per_second=50_000)
        server.state.responder = SmallModelResponder(odds_scale)
        client = OllamaClient(Backend(name="standin", kind="ollama", url=server.url), stall_timeout_s=30)
        started = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda product: run_task(
                client, template, "llama3.2:1b", product, params, repair=mode == "on", feedback=mode == "on"),
                products(task)))
        outcome = Outcome(results, len(server.state.requests_to("/api/chat")), time.perf_counter() - started)
        client.close()
    outcome.broken = [(r, why) for r in results if r.ok and (why := audit(task, r.output, params))]
    return outcome


def examples(on: Outcome, limit: int = 2) -> list[str]:
    lines = []
    for result in [r for r in on.results if r.status == "repaired"][:limit]:
        lines.append(f"    before: {' '.join(result.raw.split())[:160]!r}")
        lines.append(f"    after:  {result.output[:160]!r}")
        lines.append(f"    repairs: {'; '.join(result.repairs)[:200]}")
    failed = [r for r in on.results if not r.ok][:1]
    for result in failed:
        lines.append(f"    failed after {result.attempts} attempts: {result.error[:160]}")
    return lines


def main() -> dict[str, dict[str, Outcome]]:
    outcomes: dict[str, dict[str, Outcome]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("description", "classification", "extraction"):
            outcomes[task] = {mode: run(task, mode, Path(tmp)) for mode in ("off", "on")}
            outcomes[task]["on, odds x2"] = run(task, "on", Path(tmp), odds_scale=2.0)
    print(f"small_models profile, {ROWS} rows per task, {WORKERS} workers; off = v1 templates, no repair, same prompt "
          "on retry; on = few-shot templates, repair, retry with feedback")
    for task, by_mode in outcomes.items():
        print(f"\n{task}")
        for mode, outcome in by_mode.items():
            print(f"  repair {mode:<11}: {outcome.row()}")
        for result, why in by_mode["on"].broken[:3]:
            print(f"    kept but breaks the brief ({why}): {result.output[:120]!r}")
        print("\n".join(examples(by_mode["on"])))
    on = [o for by_mode in outcomes.values() for o in [by_mode["on"]]]
    rows = sum(len(o.results) for o in on)
    usable = sum(o.usable for o in on) / rows
    per_row = sum(o.requests for o in on) / rows
    broken = sum(len(o.broken) for o in on)
    print(f"\nrepair on, all tasks: {fmt.percent(usable, 1)} usable (target >= 95 %), {broken} kept breaking the "
          f"brief (target 0), {per_row:.2f} requests/row (target <= 1.3)")
    return outcomes


if __name__ == "__main__":
    main()
