// The models page: activate a version (after its warnings), retrain now with progress.
"use strict";

const activateBox = document.getElementById("activate-message");

document.querySelectorAll("button.activate").forEach((button) => {
  button.addEventListener("click", async () => {
    const row = button.closest("tr");
    const version = row.dataset.version;
    const lacks = JSON.parse(row.dataset.lacks || "[]");
    if (!button.dataset.armed) {  // a second click confirms, after the warning
      button.dataset.armed = "1";
      button.textContent = "Confirm activate";
      activateBox.className = "message warn";
      activateBox.textContent = lacks.length
        ? `${version} does not know ${lacks.join(", ")}: tracks labelled or predicted so will be classified as something else. Click again to activate.`
        : `Activate ${version}? Tracks it did not classify are queued for reclassification. Click again to confirm.`;
      return;
    }
    button.disabled = true;
    const { ok, data } = await api("POST", `/api/models/${encodeURIComponent(version)}/activate`);
    if (!ok) {
      activateBox.className = "message error";
      activateBox.textContent = data.error || "activation failed";
      button.disabled = false;
      return;
    }
    activateBox.className = "message good";
    activateBox.textContent = `Active model: ${data.active} (${data.genres} genres); ` +
      `${data.queued} track(s) queued for reclassification. ` + data.warnings.join(" ");
    setTimeout(() => location.reload(), 2500);
  });
});

const panel = document.getElementById("retrain-panel");
const retrainButton = document.getElementById("retrain-now");
let sawRunning = false;  // reload the history only after a run this page watched

function showJob(job) {
  if (!job || job.state === "idle") return;
  panel.hidden = false;
  const running = job.state === "running";
  retrainButton.disabled = running;
  document.getElementById("retrain-state").textContent = running
    ? "Retraining…" : (job.outcome ? job.outcome.summary || job.outcome.decision : "finished");
  document.getElementById("retrain-elapsed").textContent = job.elapsed !== null ? `${job.elapsed} s` : "";
  const bar = document.getElementById("retrain-epochs");
  if (job.epoch) { bar.max = job.epoch[1]; bar.value = job.epoch[0]; }
  else if (!running) { bar.max = 1; bar.value = 1; }
  else bar.removeAttribute("value");  // indeterminate until the first epoch
  const log = document.getElementById("retrain-log");
  log.textContent = job.messages.join("\n");
  log.hidden = !job.messages.length;
  if (running) { sawRunning = true; setTimeout(poll, 1000); }
  else if (job.outcome && sawRunning) setTimeout(() => location.reload(), 4000);
}

async function poll() {
  const { ok, data } = await api("GET", "/api/retrain");
  if (ok) showJob(data);
}

retrainButton.addEventListener("click", async () => {
  retrainButton.disabled = true;
  const { ok, status, data } = await api("POST", "/api/retrain");
  if (ok) showJob(data);
  else {
    panel.hidden = false;
    document.getElementById("retrain-state").textContent = data.error || `failed (${status})`;
    if (status === 409 && data.job) showJob(data.job);
    else retrainButton.disabled = false;
  }
});

poll();
