"""Chat streaming cost in a real browser, as ratios against a raw httpx client on the same stream.

The stand-in emits 3,000 tokens at 1,000 tokens/s. Three figures, each the median of a few runs:

* stream ratio: Enter -> last token visible in headless Chromium, divided by the raw client's time to
  read the whole stream (target <= 1.10);
* floor: Enter -> a static one-token reply visible (page rerun + render, no streaming);
* first token: Enter -> first token visible, against floor + raw time to first token (target <= +100 ms).

It is run for the shipped coalescing (50 ms, growing with the text), a fixed 50 ms, and per-token
updates (what plain ``st.write_stream`` does), to show what each step buys. Times are taken inside the
page (keydown -> MutationObserver -> next animation frame), so Playwright's own polling does not count.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from tests.e2e.conftest import CHROMIUM_ARGS, goto, start_dashboard, stop_dashboard, wait_for_app
from tests.standin import StandinServer

TOKENS = 3000
RATE = 1000.0
RUNS = 3
MODEL = "llama3.2:1b"

TIMING_JS = """
([firstMarker, lastMarker]) => {
  window.__t = {enter: null, first: null, last: null};
  document.addEventListener('keydown', e => { if (e.key === 'Enter' && window.__t.enter === null)
    window.__t.enter = performance.now(); }, {capture: true});
  const seen = () => {
    const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (messages.length < 2) return;
    const text = messages[messages.length - 1].textContent || '';
    if (window.__t.first === null && text.includes(firstMarker))
      requestAnimationFrame(() => { if (window.__t.first === null) window.__t.first = performance.now(); });
    if (window.__t.last === null && text.includes(lastMarker))
      requestAnimationFrame(() => { if (window.__t.last === null) window.__t.last = performance.now(); });
  };
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def raw_client(url: str) -> tuple[float, float]:
    """Seconds to the first token and to the last line, reading the stream with plain httpx."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "bench"}], "stream": True}
    started = time.perf_counter()
    first = None
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/api/chat", json=body) as response:
        for line in response.iter_lines():
            if first is None and '"content":"t' in line:
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def browser_run(page: Page, url: str, first_marker: str, last_marker: str) -> tuple[float, float]:
    """Seconds from Enter to the first and the last marker visible."""
    goto(page, type("S", (), {"url": url})(), "/chat")  # type: ignore[arg-type]
    page.evaluate(TIMING_JS, [first_marker, last_marker])
    box = page.locator("[data-testid='stChatInput'] textarea")
    box.fill("bench")
    box.press("Enter")
    page.wait_for_function("() => window.__t.last !== null", timeout=120_000, polling=100)
    timings = page.evaluate("() => window.__t")
    wait_for_app(page, 60_000)
    return (timings["first"] - timings["enter"]) / 1000, (timings["last"] - timings["enter"]) / 1000


def measure(interval_ms: float, per_char_us: float, standin: StandinServer) -> dict[str, float]:
    env = {"OLLAMA_HOST": standin.url, "DASHBOARD_STREAM_INTERVAL_MS": str(interval_ms),
           "DASHBOARD_STREAM_INTERVAL_US_PER_CHAR": str(per_char_us)}
    server = start_dashboard(env, Path(tempfile.mkdtemp(prefix="bench-chat-")))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            floors, firsts, lasts, raw_firsts, raw_totals = [], [], [], [], []
            for _ in range(RUNS):
                standin.state.configure(reply_tokens=1, tokens_per_second=RATE)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                floors.append(browser_run(page, server.url, "END.", "END.")[1])
                page.close()
                standin.state.configure(reply_tokens=TOKENS)
                raw_first, raw_total = raw_client(standin.url)
                raw_firsts.append(raw_first)
                raw_totals.append(raw_total)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                first, last = browser_run(page, server.url, "t0001", f"t{TOKENS - 1:04d} END.")
                page.close()
                firsts.append(first)
                lasts.append(last)
            browser.close()
    finally:
        stop_dashboard(server)
    med = statistics.median
    return {"floor": med(floors), "first": med(firsts), "last": med(lasts), "raw_first": med(raw_firsts),
            "raw_total": med(raw_totals)}


def main() -> None:
    with StandinServer() as standin:
        httpx.post(f"{standin.url}/api/generate", json={"model": MODEL, "keep_alive": "1h"}, timeout=30)
        print(f"stand-in: {TOKENS} tokens at {RATE:.0f} tokens/s; median of {RUNS} runs each")
        variants = (("shipped: every 50 ms, +10 us per character on screen", 50.0, 10.0),
                    ("fixed 50 ms, no growth", 50.0, 0.0),
                    ("per token (what a plain st.write_stream does)", 0.001, 0.0))
        for label, interval_ms, per_char_us in variants:
            m = measure(interval_ms, per_char_us, standin)
            ratio = m["last"] / m["raw_total"]
            first_budget = m["floor"] + m["raw_first"] + 0.100
            print(f"\n{label}")
            print(f"  raw httpx client: first token {m['raw_first'] * 1000:.0f} ms, "
                  f"whole stream {m['raw_total']:.3f} s")
            print(f"  browser: Enter -> last token visible {m['last']:.3f} s  ->  stream ratio {ratio:.3f} "
                  f"(target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
            print(f"  floor (static reply visible after Enter): {m['floor'] * 1000:.0f} ms")
            print(f"  first token visible after Enter: {m['first'] * 1000:.0f} ms vs floor + raw TTFT + 100 ms = "
                  f"{first_budget * 1000:.0f} ms ({'met' if m['first'] <= first_budget else 'NOT met'}; "
                  f"late by {(m['first'] - m['floor'] - m['raw_first']) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
