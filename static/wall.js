// The wall screen's two jobs in the browser (injected once by components/kiosk.py through st.html).
// No markup inside this script: st.html's sanitizer drops a script whose text looks like a tag.
//  1. Scale: the wall is laid out on a fixed 1920x1080 canvas; a CSS transform fits it to any screen (x2 on
//     4K, x0.67 on 720p), charts included, so nothing scrolls and text keeps its proportions. A transform,
//     not zoom: it leaves layout sizes alone, so the charts measure their 1920-wide columns correctly.
//  2. Watchdog: every refresh writes a heartbeat (.wall-beat, data-beat changes each time). When it stops
//     changing for longer than three refreshes (the websocket dropped, the server died, the browser lost
//     the network), the wall says STALE in large type and greys its numbers, instead of showing frozen
//     figures as if they were live. It clears by itself when the heartbeat moves again.
(() => {
  if (window.__ollamaWall) return;
  window.__ollamaWall = true;
  const root = document.documentElement;
  let lastBeat = null;
  let lastChange = performance.now();
  let lastClock = "";

  const fit = () => {
    const scale = Math.min(window.innerWidth / 1920, window.innerHeight / 1080);
    const left = Math.max(0, (window.innerWidth - 1920 * scale) / 2);
    if (root.style.getPropertyValue("--wall-scale") !== String(scale)) {
      root.style.setProperty("--wall-scale", String(scale));
      root.style.setProperty("--wall-left", `${left}px`);
    }
  };

  const banner = () => {
    let el = document.getElementById("wall-stale-banner");
    if (!el) {
      el = document.createElement("div");
      el.id = "wall-stale-banner";
      el.setAttribute("role", "alert");
      for (const [name, text] of [["wall-stale-word", "STALE"], ["wall-stale-text", ""]]) {
        const part = document.createElement("div");
        part.className = name;
        part.textContent = text;
        el.appendChild(part);
      }
      document.body.appendChild(el);
    }
    return el;
  };

  const ago = (ms) => {
    const s = Math.floor(ms / 1000);
    return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  };

  const watch = () => {
    fit();
    const beat = document.querySelector(".wall-beat");
    if (!beat) {
      root.classList.remove("wall-is-stale");
      return;
    }
    const now = performance.now();
    if (beat.dataset.beat !== lastBeat) {
      lastBeat = beat.dataset.beat;
      lastChange = now;
      lastClock = beat.dataset.clock || "";
    }
    const refresh = parseFloat(beat.dataset.refresh || "5") * 1000;
    const limit = Math.max(3 * refresh, refresh + 4000);
    const stale = now - lastChange > limit;
    root.classList.toggle("wall-is-stale", stale);
    if (stale) {
      banner().querySelector(".wall-stale-text").textContent =
        `No update from the dashboard since ${lastClock} (${ago(now - lastChange)} ago): ` +
        "the connection is lost and these figures are old. The screen recovers by itself.";
    }
  };

  window.addEventListener("resize", fit);
  setInterval(watch, 500);
  watch();
})();
