// The review queue: play the clips the model judged, label in one click or key.
"use strict";

const rows = Array.from(document.querySelectorAll("article.track"));
let current = -1;

function fmt(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function select(index) {
  if (!rows.length) return;
  current = Math.max(0, Math.min(rows.length - 1, index));
  rows.forEach((row, i) => row.classList.toggle("current", i === current));
  rows[current].focus({ preventScroll: true });
  rows[current].scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function nextOpen(from) {
  for (let i = from + 1; i < rows.length; i++) {
    if (!rows[i].classList.contains("done") && !rows[i].classList.contains("skipped")) return i;
  }
  return Math.min(from + 1, rows.length - 1);
}

function message(row, text, kind, ...buttons) {
  const box = row.querySelector(".message");
  box.className = "message " + (kind || "");
  box.replaceChildren(text, ...buttons);
}

// --- the player ------------------------------------------------------------------------

// play() returns a promise that rejects with AbortError when a pause() comes first (space
// pressed twice, or the next track starting): that is the user's doing, not a fault.
function start(audio) {
  const playing = audio.play();
  if (playing) playing.catch((e) => { if (e.name !== "AbortError") console.error(e); });
}

function setupPlayer(row) {
  const audio = row.querySelector("audio");
  const clips = JSON.parse(row.dataset.clips || "[]");
  const clock = row.querySelector(".clock");
  const play = row.querySelector("button.play");
  const clipsOnly = row.querySelector(".clips-only");
  const clipButtons = Array.from(row.querySelectorAll("button.clip"));
  let clip = 0;

  function inClip(t) { return clips.findIndex((c) => t >= c.start - 0.25 && t < c.end); }
  function mark() { clipButtons.forEach((b, i) => b.classList.toggle("playing", i === clip && !audio.paused)); }

  row.playClip = function (index) {
    clip = index;
    const go = () => { audio.currentTime = clips[index] ? clips[index].start : 0; start(audio); };
    if (audio.readyState >= 1) go();
    else { audio.addEventListener("loadedmetadata", go, { once: true }); audio.load(); }
  };
  row.toggle = function () {
    if (!audio.paused) { audio.pause(); return; }
    const t = audio.currentTime;
    if (clipsOnly.checked && clips.length && inClip(t) < 0) row.playClip(0);
    else start(audio);
  };
  play.addEventListener("click", () => { select(rows.indexOf(row)); row.toggle(); });
  clipButtons.forEach((b) => b.addEventListener("click", () => {
    select(rows.indexOf(row)); row.playClip(Number(b.dataset.index));
  }));
  audio.addEventListener("play", () => {
    document.querySelectorAll("audio").forEach((other) => { if (other !== audio) other.pause(); });
    play.textContent = "❚❚"; mark();
  });
  audio.addEventListener("pause", () => { play.textContent = "▶"; mark(); });
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    clock.textContent = `${fmt(t)} / ${fmt(audio.duration)}`;
    if (!clipsOnly.checked || !clips.length || audio.paused) return;
    const c = clips[clip];
    if (c && t >= c.end - 0.05) {  // the end of a window: on to the next, or stop
      if (clip + 1 < clips.length) row.playClip(clip + 1);
      else { audio.pause(); clip = 0; }
    }
  });
  audio.addEventListener("error", () => message(row, "this file cannot be played", "error"));
}

// --- labelling -------------------------------------------------------------------------

async function label(row, genre, newGenre) {
  const id = row.dataset.id;
  const body = { genre };
  if (newGenre) body.new_genre = true;
  message(row, `labelling ${genre}…`);
  const { ok, status, data } = await api("POST", `/api/tracks/${id}/correction`, body);
  if (ok) {
    done(row, `Labelled ${data.track.corrected_genre}.`);
  } else if (status === 422) {
    const buttons = (data.suggestions || []).map((s) =>
      el("button", { type: "button", text: `Use ${s}`, onclick: () => label(row, s, false) }));
    buttons.push(el("button", { type: "button", class: "new", text: `Create new genre “${data.genre}”`,
                                onclick: () => label(row, data.genre, true) }));
    message(row, `“${data.genre}” is not a known genre.` +
            (data.suggestions && data.suggestions.length ? " Did you mean:" : ""), "error", ...buttons);
  } else {
    message(row, data.error || `failed (${status})`, "error");
  }
}

function done(row, text) {
  row.classList.add("done");
  row.querySelector("audio").pause();
  message(row, text, "good", el("button", { type: "button", text: "Undo", onclick: () => undo(row) }));
  if (rows.indexOf(row) === current) select(nextOpen(current));
}

async function undo(row) {
  const { ok, data } = await api("DELETE", `/api/tracks/${row.dataset.id}/correction`);
  if (!ok) { message(row, data.error || "undo failed", "error"); return; }
  row.classList.remove("done");
  message(row, "Label removed (kept in the history).");
}

function skip(row) {
  row.classList.add("skipped");
  row.querySelector("audio").pause();
  message(row, "Skipped.");
  select(nextOpen(rows.indexOf(row)));
}

async function albumApply(row, button) {
  const genre = row.querySelector(".album-genre").value;
  const scope = row.querySelector(".album-scope").value;
  if (!button.dataset.armed) {  // an explicit second click: a folder is many tracks
    button.dataset.armed = "1";
    button.textContent = `Confirm: label the ${scope === "album" ? "album" : "folder"} ${genre}`;
    return;
  }
  delete button.dataset.armed;
  button.textContent = "Apply to folder…";
  const { ok, status, data } = await api("POST", `/api/tracks/${row.dataset.id}/album-correction`,
                                         { genre, scope });
  if (!ok) { message(row, data.error || `failed (${status})`, "error"); return; }
  const ids = new Set(data.tracks.map(String));
  for (const other of rows) {
    if (ids.has(other.dataset.id)) {
      other.classList.add("done");
      message(other, `Labelled ${data.genre} with its folder.`, "good");
    }
  }
  message(row, `Labelled ${data.tracks.length} track(s) of the folder ${data.genre}.`, "good");
  select(nextOpen(rows.indexOf(row)));
}

function setupActions(row) {
  row.querySelector(".accept").addEventListener("click", () => label(row, row.dataset.genre, false));
  row.querySelector(".set-other").addEventListener("click", () =>
    label(row, row.querySelector("select.other").value, false));
  const typed = row.querySelector("input.new-genre");
  const setTyped = () => { if (typed.value.trim()) label(row, typed.value.trim(), false); };
  row.querySelector(".set-typed").addEventListener("click", setTyped);
  typed.addEventListener("keydown", (e) => { if (e.key === "Enter") setTyped(); });
  row.querySelector(".skip").addEventListener("click", () => skip(row));
  row.querySelectorAll("button.pick").forEach((b) =>
    b.addEventListener("click", () => label(row, b.dataset.genre, false)));
  const album = row.querySelector(".album-apply");
  album.addEventListener("click", () => albumApply(row, album));
  row.addEventListener("click", (e) => {
    if (!e.target.closest("button, input, select, a, label")) select(rows.indexOf(row));
  });
}

// --- keys ------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea")) return;
  if (e.key === " " && e.target.closest && e.target.closest("button")) return;  // press it
  if (e.ctrlKey || e.metaKey || e.altKey || current < 0) return;
  const row = rows[current];
  if (e.key === " ") { e.preventDefault(); row.toggle(); }
  else if (e.key === "a") label(row, row.dataset.genre, false);
  else if (e.key >= "1" && e.key <= "9") {
    const top = JSON.parse(row.dataset.top || "[]");
    const genre = top[Number(e.key) - 1];
    if (genre) label(row, genre, false);
  } else if (e.key === "j") select(current + 1);
  else if (e.key === "k") select(current - 1);
  else if (e.key === "s") skip(row);
  else return;
  if (e.key !== " ") e.preventDefault();
});

// Rows labelled on this page have left the queue: the next page starts that much earlier.
document.querySelectorAll(".pager a").forEach((a) => a.addEventListener("click", (e) => {
  const labelled = rows.filter((r) => r.classList.contains("done")).length;
  if (!labelled || !a.textContent.includes("next")) return;
  const url = new URL(a.href);
  url.searchParams.set("offset", Math.max(0, Number(url.searchParams.get("offset") || 0) - labelled));
  e.preventDefault();
  location.href = url.toString();
}));

rows.forEach((row) => { setupPlayer(row); setupActions(row); });
if (rows.length) select(0);
