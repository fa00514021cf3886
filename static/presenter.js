// The compare page's presenter view in the browser (injected by components/presenter.py through st.html).
// Streamlit has no public keyboard API, so the keys click the labelled buttons of the presenter bar:
//   Right / Left: next / previous prompt, R: reveal, 1-4: vote for column A-D, 0 or T: tie, Esc: stop.
// And it fits the answers to the screen: each answer box reaches the bottom of the window; the text takes
// the largest size of a ladder (scaled with the window's height, never under FLOOR px) at which every
// column fits; at the floor, a column that still overflows follows the stream while it runs and goes back
// to its first words once done. No markup inside this script: st.html's sanitizer drops a script whose
// text looks like a tag.
(() => {
  if (window.__ollamaPresenter) return;
  window.__ollamaPresenter = true;
  const root = document.documentElement;
  const LADDER = [30, 27, 24, 21, 19, 17];
  const FLOOR = 16;
  const PRESS_PATIENCE_MS = 1500;
  const seen = {};

  const click = (key) => {
    const button = document.querySelector(`.st-key-${key} button`);
    if (!button || button.disabled) return false;
    button.click();
    return true;
  };
  // Keys typed into a text field are the person's, not the presenter bar's (a focused switch or button is fine).
  const TEXT_INPUTS = ["text", "search", "number", "email", "password", "url", "tel"];
  const typing = (el) => el && (el.isContentEditable || ["TEXTAREA", "SELECT"].includes(el.tagName) ||
    (el.tagName === "INPUT" && TEXT_INPUTS.includes((el.type || "text").toLowerCase())));

  document.addEventListener("keydown", (event) => {
    if (!document.querySelector(".st-key-present-bar") || event.altKey || event.ctrlKey || event.metaKey) return;
    if (typing(event.target)) return;
    let key = null;
    if (event.key === "ArrowRight") key = "present-next";
    else if (event.key === "ArrowLeft") key = "present-prev";
    else if (event.key === "r" || event.key === "R") key = "present-reveal";
    else if (event.key === "Escape") key = "compare-stop";
    else if (["1", "2", "3", "4"].includes(event.key)) key = "present-vote-" + "ABCD"[Number(event.key) - 1];
    else if (event.key === "0" || event.key === "t" || event.key === "T") key = "present-vote-tie";
    if (!key) return;
    event.preventDefault();
    event.stopPropagation();
    // A key pressed while the page is redrawing (the button between two renders, or not yet enabled) is not
    // lost: it is tried again for a moment, so a presenter's Esc stops the round on the first press.
    const until = performance.now() + PRESS_PATIENCE_MS;
    const attempt = () => {
      if (!click(key) && performance.now() < until) setTimeout(attempt, 50);
    };
    attempt();
  }, true);

  // The ladder is searched from the top only when a new round starts or the window changes; while a round
  // streams, a growing answer only ever steps the size down, one layout per step, so fitting stays cheap.
  let step = 0;
  let lastKey = "";
  const fit = () => {
    const boxes = Array.from(document.querySelectorAll(".answer-mark"))
      .map((mark) => ({ mark, box: mark.closest('[data-testid="stVerticalBlock"]') }))
      .filter((item) => item.box);
    if (!boxes.length) return;
    const size = (box, room) => {
      if (box.style.height !== `${room}px`) {
        box.style.height = `${room}px`;
        box.style.maxHeight = `${room}px`;
      }
    };
    const tops = boxes.map(({ box }) => box.getBoundingClientRect().top);
    boxes.forEach(({ box }, i) => {
      box.classList.add("answer-box");  // the stylesheet sizes its text and lets it scroll
      size(box, Math.max(80, Math.floor(window.innerHeight - tops[i] - 10)));
    });
    // What sits below the boxes (the columns' padding and borders, the page's margin) must fit too.
    const main = document.querySelector('[data-testid="stMain"]');
    const extra = main ? main.scrollHeight - main.clientHeight : 0;
    if (extra > 0) {
      for (const { box } of boxes) size(box, Math.max(80, parseFloat(box.style.height) - extra));
    }
    const unit = window.innerHeight / 1080;
    const sizes = [...new Set(LADDER.map((s) => Math.max(FLOOR, Math.round(s * unit))))];
    const states = boxes.map(({ mark }) => mark.dataset.state).join("");
    const key = `${window.innerWidth}x${window.innerHeight}:${boxes.length}`;
    const fresh = key !== lastKey || (states.includes("live") && !Object.values(seen).includes("live"));
    const fits = () => boxes.every(({ box }) => box.scrollHeight <= box.clientHeight + 1);
    if (fresh) step = 0;
    step = Math.min(step, sizes.length - 1);
    root.style.setProperty("--answer-size", `${sizes[step]}px`);
    while (step < sizes.length - 1 && !fits()) {
      step += 1;
      root.style.setProperty("--answer-size", `${sizes[step]}px`);
    }
    lastKey = key;
    for (const { mark, box } of boxes) {
      const state = mark.dataset.state;
      if (state === "live" && box.scrollHeight > box.clientHeight + 1) box.scrollTop = box.scrollHeight;
      else if (state === "done" && seen[mark.dataset.letter] !== "done") box.scrollTop = 0;
    }
    for (const { mark } of boxes) seen[mark.dataset.letter] = mark.dataset.state;
  };

  let queued = false;
  const soon = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fit(); });
  };
  // Redraws replace the answer boxes: fit them in the animation-frame callback, which runs before the browser
  // paints that frame, so a box never shows unbounded; once per frame, not once per mutation (a round's first
  // frame is hundreds of mutations, each fit forcing layout). Style changes are not observed, so fitting does
  // not loop.
  new MutationObserver(soon).observe(document.body, { childList: true, subtree: true, characterData: true });
  window.addEventListener("resize", soon);
  setInterval(soon, 500);
})();
