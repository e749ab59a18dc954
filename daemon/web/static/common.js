// genred web: what every page shares. Plain JavaScript, no build step, no libraries.
"use strict";

// A JSON API call; resolves to {ok, status, data}. Same-origin, so the session cookie goes
// along and the server's CSRF check sees this page's Origin.
async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    return { ok: false, status: 0, data: { error: "the server cannot be reached" } };
  }
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  return { ok: response.ok, status: response.status, data };
}

// Build an element: el("button", {class: "x", text: "Go"}, child, ...). Text only ever goes
// in through textContent, never as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function pct(p) { return p === null || p === undefined ? "-" : Math.round(100 * p) + "%"; }

async function showStatus() {
  const line = document.getElementById("status-line");
  if (!line) return;
  const { ok, data } = await api("GET", "/api/status");
  if (!ok) return;
  const daemon = data.daemon && data.daemon.running ? "daemon running" : "daemon not running";
  const model = data.active_model && data.active_model.version ? data.active_model.version : "no model";
  line.textContent = `${daemon} · ${data.queue} queued · model ${model}`;
}

document.addEventListener("DOMContentLoaded", showStatus);
