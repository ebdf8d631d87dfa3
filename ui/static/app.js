// The web UI. Plain JS, no build step, no CDN.
//
// Everything on the page comes from the session's durable event log, streamed by
// GET /api/sessions/{s}/events (server-sent events: `id:` is the event's seq, `event:` its
// kind). EventSource resends the last seq it saw as Last-Event-ID when it reconnects, so a
// dropped connection resumes exactly where it stopped; a reload starts again from seq 0 and
// rebuilds the whole page. `event: delta` (no id) carries a model round's text while it
// streams; the journaled `model_round` event replaces it.
//
// Each finished step that left a checkpoint offers "rewind to here" and "fork from here"
// (GET .../checkpoints says which do). What a rewind undid stays on the page, dimmed.
//
// A finished task's answer carries its verdict (verified, failed or unverified) as a badge,
// with the checks the harness ran behind it, each linked to its tool call in the timeline,
// and its "Changes": the files the task changed with +/− counts, each unfolding to its
// coloured diff, and the .patch to download.
//
// Code comes in through the Code panel: an archive (the file picker, or dropped anywhere on
// the page) or a git URL, imported as the session's baseline; a git import goes back out as a
// branch (Export). The workspace downloads whole as a .tar.gz.
"use strict";

const KINDS = ["user_message", "steering", "plan", "step_started", "step_finished", "model_round",
  "tool_call", "tool_result", "approval_requested", "approval_resolved", "interrupted",
  "final_answer", "error", "sandbox", "rewound", "forked", "rewrite", "check", "imported", "exported"];
const FINISHING = ["final_answer", "error", "interrupted"];
const VERDICTS = ["verified", "failed", "unverified"];
const STORE = "agent.sessions";
const $ = (id) => document.getElementById(id);

let view = null; // everything about the session on screen; replaced when switching sessions

function freshView(session) {
  return {
    session, source: null, lastSeq: 0,
    plan: null,              // {taskId, seq, items: [{title, status}]}
    checkpoints: new Map(),  // checkpoint_id -> the Agent's checkpoint
    forkedText: null,        // this session is a fork: the text of its `forked` event
    settled: new Set(),      // refs whose journaled model_round has arrived
    plannedTasks: new Set(), // tasks whose plan has arrived (their "plan" live text is over)
    finishedTasks: new Set(),
    timers: {},
    slotTimer: null,         // polls Sandbox/info while a command is in flight
    asked: {},               // kind of refresh -> the number of the newest one asked
  };
}

// --- small helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function sessionPath(path, session = view.session) {
  return `/api/sessions/${encodeURIComponent(session)}${path}`;
}

async function api(path, options = {}) {
  const response = await fetch(sessionPath(path), options);
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: keep the text */ }
  if (!response.ok) {
    const error = new Error((body && body.message) || text || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function post(path, body) {
  return api(path, body === undefined ? { method: "POST" } :
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

function notice(message) {
  const box = $("notice");
  box.textContent = message || "";
  box.hidden = !message;
}

// A refresh's answer may land only while it is the newest of its kind for the session on
// screen: an older answer that arrives late (a busy server) would put stale state back.
function newest(kind) {
  const current = view;
  const ticket = current.asked[kind] = (current.asked[kind] || 0) + 1;
  return () => view === current && current.asked[kind] === ticket;
}

function later(name, fn, ms = 150) {  // coalesce bursts of events into one refresh
  clearTimeout(view.timers[name]);
  view.timers[name] = setTimeout(fn, ms);
}

// --- sessions (kept in this browser's localStorage) ------------------------------------------

function knownSessions() {
  try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (_) { return []; }
}

function remember(session) {
  const list = knownSessions().filter((s) => s !== session);
  list.unshift(session);
  localStorage.setItem(STORE, JSON.stringify(list.slice(0, 50)));
}

function renderSessions() {
  const list = $("sessions");
  list.replaceChildren(...knownSessions().map((s) => el("li", {
    class: view && s === view.session ? "current" : "",
    "data-session": s,
  }, el("a", { href: `#${encodeURIComponent(s)}` }, s))));
}

function newSessionId() {
  const random = Math.random().toString(36).slice(2, 8);
  return `s-${new Date().toISOString().slice(0, 10)}-${random}`;
}

function openSession(session) {
  if (!session) return;
  if (view && view.source) view.source.close();
  Object.values((view && view.timers) || {}).forEach(clearTimeout);
  if (view) clearInterval(view.slotTimer);
  view = freshView(session);
  remember(session);
  renderSessions();
  notice("");
  $("session-title").textContent = session;
  for (const id of ["chat", "timeline", "approvals", "live"]) $(id).replaceChildren();
  $("plan").replaceChildren(el("li", { class: "empty" }, "No plan yet."));
  $("files").replaceChildren(el("li", { class: "empty" }, "–"));
  $("file-box").hidden = true;
  $("slot").hidden = true;
  $("approvals-panel").hidden = true;
  $("live-panel").hidden = true;
  $("event-count").textContent = "";
  $("download").href = sessionPath("/download", session);
  $("download-archive").href = sessionPath("/archive", session);
  for (const id of ["import-result", "export-result"]) $(id).hidden = true;
  showSource(null);
  if (location.hash !== `#${encodeURIComponent(session)}`) location.hash = encodeURIComponent(session);
  refreshStatus();
  refreshApprovals();
  connect();
}

// --- the event stream ------------------------------------------------------------------------

function connect(after = 0) {
  const current = view;
  // After a reload we want everything: after=0. EventSource's own reconnects send
  // Last-Event-ID, which the server prefers over ?after=.
  const source = new EventSource(`/api/sessions/${encodeURIComponent(current.session)}/events?after=${after}`);
  current.source = source;
  const live = (fn) => (e) => { if (view === current) fn(e); };
  for (const kind of KINDS) source.addEventListener(kind, live(onEvent));
  source.addEventListener("delta", live((e) => onDelta(JSON.parse(e.data))));
  source.addEventListener("meta", live((e) => onMeta(JSON.parse(e.data))));
  source.onopen = live(() => setConnection("live"));
  source.onerror = live((e) => {
    if (typeof e.data === "string") return; // the log's `error` event (a failed task), not ours
    setConnection("reconnecting…");
    // EventSource gives up for good on an HTTP error (a 502 while Restate restarts, say):
    // then we open a new one ourselves, from the last event we have.
    if (source.readyState === EventSource.CLOSED) setTimeout(live(() => connect(current.lastSeq)), 2000);
  });
}

function setConnection(text) {
  const badge = $("connection");
  badge.textContent = text;
  badge.className = `badge conn-${text.replace(/\W/g, "")}`;
}

function onMeta(meta) {
  const dropped = Object.values(meta.compacted || {}).reduce((a, b) => a + b, 0);
  if (dropped && !$("compacted")) {
    $("timeline").prepend(el("div", { id: "compacted", class: "note" },
      `${dropped} older events were compacted out of the log; the chat below starts later.`));
  }
}

function onEvent(message) {
  // The log's kind "error" shares its name with EventSource's own connection error event,
  // which has no data: that one is handled by onerror.
  if (typeof message.data !== "string") return;
  const event = JSON.parse(message.data);
  if (event.seq <= view.lastSeq) return; // the server never repeats one; be safe anyway
  view.lastSeq = event.seq;
  $("event-count").textContent = `(${event.seq})`;
  addToTimeline(event);
  addToChat(event);
  updatePlan(event);
  settleLive(event);
  if (event.kind === "rewound") markRewound(event);
  if (event.kind === "forked") { view.forkedText = event.text; showInherited(); }
  const moved = ["rewound", "forked", "imported"]; // the workspace and the checkpoints changed under us
  if (event.kind.startsWith("approval") || FINISHING.includes(event.kind)) later("approvals", refreshApprovals);
  if (["user_message", "plan", "step_started", "step_finished", ...FINISHING, ...moved].includes(event.kind)) {
    later("status", refreshStatus);
  }
  if (["tool_result", "step_finished", ...FINISHING, ...moved].includes(event.kind)) later("files", refreshFiles, 400);
  if (event.kind === "tool_call" && event.text.startsWith("run_command")) watchSlot(true);
  if (["tool_result", ...FINISHING, ...moved].includes(event.kind)) watchSlot(false);
  // A step's checkpoint is recorded just after its step_finished: the next step's start or
  // the task's end is when it is surely there.
  if (["step_started", "step_finished", ...FINISHING, ...moved].includes(event.kind)) {
    later("checkpoints", refreshCheckpoints);
  }
}

// --- timeline --------------------------------------------------------------------------------

function addToTimeline(event) {
  const time = new Date(event.time * 1000).toLocaleTimeString();
  const head = [el("span", { class: "seq" }, `#${event.seq}`), el("span", { class: "time" }, time),
    el("span", { class: `kind kind-${event.kind}` }, event.kind.replace("_", " ")),
    el("span", { class: "text" }, event.text.length > 160 ? event.text.slice(0, 160) + "…" : event.text)];
  const verdict = FINISHING.includes(event.kind) ? verdictOf(event.detail) : null;
  if (verdict) head.push(verdictBadge(verdict));
  const detail = verdict ? JSON.stringify(verdict, null, 2) : event.detail;
  const body = [event.text.length > 160 ? event.text : null, detail].filter(Boolean);
  const attrs = { class: `ev ev-${event.kind}`, "data-seq": String(event.seq), "data-kind": event.kind };
  if (event.ref) attrs["data-ref"] = event.ref;
  const finished = event.kind === "step_finished" && /^step (\d+)$/.exec(event.ref || "");
  if (finished && event.task_id) {
    attrs["data-checkpoint"] = `${event.task_id}-s${finished[1]}`; // the id the Task gives it
    head.push(el("span", { class: "step-actions" }));
  } else if (event.kind === "imported" && event.ref) {
    attrs["data-checkpoint"] = event.ref; // an import is a checkpoint too: the baseline
    head.push(el("span", { class: "step-actions" }));
  }
  const item = body.length
    ? el("details", attrs, el("summary", {}, ...head), ...body.map((b) => el("pre", {}, b)))
    : el("div", attrs, ...head);
  const timeline = $("timeline");
  const nearBottom = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - 40;
  timeline.append(item);
  if (attrs["data-checkpoint"]) renderStepActions(item);
  if (nearBottom) timeline.scrollTop = timeline.scrollHeight;
}

// --- chat ------------------------------------------------------------------------------------

function addToChat(event) {
  const bubbles = {
    user_message: ["user", "you"], steering: ["user steer", "you, steering"],
    final_answer: ["agent", "agent"], error: ["event failed", "failed"],
    interrupted: ["event", "stopped"], approval_requested: ["event", "approval"],
    approval_resolved: ["event", "approval"], sandbox: ["event failed", "sandbox"],
    rewound: ["event", "rewound"], forked: ["event", "forked"],
    imported: ["event", "imported"], exported: ["event", "exported"],
  };
  const style = bubbles[event.kind];
  if (!style) return;
  const chat = $("chat");
  const bubble = el("div", { class: `msg ${style[0]}`, "data-seq": String(event.seq) },
    el("div", { class: "who" }, style[1]), el("div", { class: "body" }, event.text));
  if (FINISHING.includes(event.kind)) {
    showVerdict(bubble, event);
    showChanges(bubble, event);
  }
  chat.append(bubble);
  chat.scrollTop = chat.scrollHeight;
}

// --- verdicts --------------------------------------------------------------------------------

// A task's verdict (app/models.py Verdict) rides on its final_answer, error or interrupted
// event as the detail, so the live stream and a reload (which replays the log) both have it.
// The log cuts a long detail; then the Agent's history, which keeps the whole verdict, fills
// it in. No verdict (a task from before there were any): no badge.
function verdictOf(detail) {
  let verdict = detail;
  if (typeof detail === "string") {
    try { verdict = JSON.parse(detail); } catch (_) { return null; }
  }
  const valid = verdict && VERDICTS.includes(verdict.verdict) && Array.isArray(verdict.checks);
  return valid ? verdict : null;
}

function showVerdict(bubble, event) {
  if (!event.task_id) return;
  bubble.dataset.task = event.task_id;
  const verdict = verdictOf(event.detail);
  if (verdict) bubble.append(renderVerdict(verdict));
  else if (event.detail) later("verdicts", verdictsFromHistory);
}

async function verdictsFromHistory() {
  const fresh = newest("verdicts");
  let entries = [];
  try { entries = (await api("/history")).messages; } catch (_) { return; }
  if (!fresh()) return;
  const byTask = new Map(entries.filter((h) => h.task_id && verdictOf(h.verdict)).map((h) => [h.task_id, h.verdict]));
  for (const bubble of document.querySelectorAll("#chat .msg[data-task]")) {
    const verdict = byTask.get(bubble.dataset.task);
    if (verdict && !bubble.querySelector(".verdict")) bubble.append(renderVerdict(verdict));
  }
}

function verdictBadge(verdict) {
  return el("span", { class: `badge verdict-badge verdict-${verdict.verdict}` }, verdict.verdict);
}

// The badge, the harness's note under it, and the checks behind it, folded until asked for.
function renderVerdict(verdict) {
  const checks = verdict.checks;
  const head = el("div", { class: "verdict-head" }, verdictBadge(verdict));
  const list = el("ul", { class: "checks", hidden: "" }, ...checks.map(renderCheck));
  if (checks.length) {
    const label = `${checks.length} check${checks.length === 1 ? "" : "s"}`;
    const toggle = el("button", { type: "button", class: "small checks-toggle", "aria-expanded": "false" },
      `${label} ▸`);
    toggle.addEventListener("click", () => {
      list.hidden = !list.hidden;
      toggle.setAttribute("aria-expanded", String(!list.hidden));
      toggle.textContent = `${label} ${list.hidden ? "▸" : "▾"}`;
    });
    head.append(toggle);
  } else head.append(el("span", { class: "checks-none" }, "nothing was run"));
  const note = verdict.note ? el("div", { class: "verdict-note" }, verdict.note) : "";
  return el("div", { class: "verdict", "data-verdict": verdict.verdict }, head, note, list);
}

function renderCheck(check) {
  const exit = check.exit_code === null || check.exit_code === undefined
    ? "no exit code" : `exit code ${check.exit_code}`;
  const target = timelineCall(check.ref);
  const show = (e) => { e.preventDefault(); showInTimeline(check.ref); };
  const link = target
    ? el("a", { href: "#", class: "check-link", onclick: show }, "tool call ↓")
    : el("span", { class: "check-ref", title: "not in this page's event log" }, check.ref || "");
  return el("li", { class: `check ${check.exit_code === 0 ? "check-ok" : "check-bad"}`, "data-ref": check.ref || "" },
    el("span", { class: "check-kind" }, check.kind), el("code", { class: "check-command" }, check.command),
    el("span", { class: "check-exit" }, exit), el("span", { class: "check-summary" }, check.summary), link);
}

// The timeline's line for a check's tool call (or, failing that, its check event).
function timelineCall(ref) {
  if (!ref) return null;
  const lines = [...document.querySelectorAll(`#timeline [data-ref="${CSS.escape(ref)}"]`)];
  return lines.findLast((l) => l.dataset.kind === "tool_call") || lines.findLast((l) => l.dataset.kind === "check")
    || lines[lines.length - 1] || null;
}

function showInTimeline(ref) {
  const line = timelineCall(ref);
  if (!line) return;
  $("timeline-box").open = true;
  document.querySelectorAll("#timeline .targeted").forEach((l) => l.classList.remove("targeted"));
  line.classList.add("targeted");
  // The command's output is in its tool_result: unfold it too.
  document.querySelectorAll(`#timeline details[data-kind="tool_result"][data-ref="${CSS.escape(ref)}"]`)
    .forEach((result) => { result.open = true; });
  line.scrollIntoView({ block: "center" });
}

// --- changes: what a task did to the files ---------------------------------------------------

// Asked of Agent.diff (with the task's id) when first unfolded: a reload of a long session asks
// for nothing, and an answer that failed is asked again on the next unfold. A finished task's
// changes stay what they were (a rewind makes new checkpoints, it never edits old ones).
function showChanges(bubble, event) {
  if (!event.task_id) return;
  const task = event.task_id;
  const stat = el("span", { class: "changes-stat" });
  const body = el("div", { class: "changes-body" });
  const box = el("details", { class: "changes", "data-task": task }, el("summary", {}, "Changes", stat), body);
  box.addEventListener("toggle", () => { if (box.open && !box.dataset.loaded) loadChanges(box, body, stat); });
  bubble.append(box);
}

async function loadChanges(box, body, stat) {
  const current = view;
  const task = box.dataset.task;
  const query = `?task=${encodeURIComponent(task)}`;
  if (!body.children.length) body.append(el("div", { class: "empty" }, "loading…"));
  let diff;
  try {
    diff = await api(`/diff${query}`);
  } catch (error) {
    if (view === current) body.replaceChildren(el("div", { class: "empty" }, `(${error.message})`));
    return;
  }
  if (view !== current) return;
  box.dataset.loaded = "yes";
  const count = diff.files.length;
  stat.textContent = ` · ${count} file${count === 1 ? "" : "s"}, +${diff.added} −${diff.removed}`;
  body.replaceChildren(renderDiff(diff, sessionPath(`/patch${query}`)));
}

function renderDiff(diff, patchHref) {
  const chunks = patchChunks(diff.patch);
  const files = diff.files.map((file, i) => renderDiffFile(file, chunkOf(file, chunks, i, diff.files.length)));
  const base = diff.base && diff.base.label ? el("div", { class: "diff-base" }, `against ${diff.base.label}`) : "";
  const cut = diff.truncated ? el("div", { class: "verdict-note" }, "The diff is too long to show whole.") : "";
  return el("div", {}, base,
    files.length ? el("ul", { class: "diff-files" }, ...files) : el("div", { class: "empty" }, "No files changed."),
    cut, el("div", { class: "changes-actions" },
      el("a", { class: "download-patch", href: patchHref, download: "" }, "Download .patch")));
}

// One file: its status, path and counts; unfolded, its part of the patch.
function renderDiffFile(file, chunk) {
  const name = file.old_path && file.old_path !== file.path ? `${file.old_path} → ${file.path}` : file.path;
  const counts = file.binary ? [el("span", { class: "diff-binary" }, "binary")]
    : [el("span", { class: "diff-added" }, `+${file.added}`), el("span", { class: "diff-removed" }, `−${file.removed}`)];
  const item = el("details", { class: "diff-file", "data-path": file.path, "data-status": file.status },
    el("summary", {}, el("span", { class: `diff-status diff-${file.status}` }, file.status),
      el("span", { class: "diff-path" }, name), ...counts));
  item.addEventListener("toggle", () => {
    if (item.open && item.children.length === 1) item.append(diffLines(file, chunk));
  });
  return el("li", {}, item);
}

// The patch, cut at each `diff --git` line: one chunk per file.
function patchChunks(patch) {
  const chunks = [];
  for (const line of (patch || "").replace(/\n$/, "").split("\n")) {
    if (line.startsWith("diff --git ")) chunks.push([]);
    if (chunks.length) chunks[chunks.length - 1].push(line);
  }
  return chunks;
}

// A file's chunk: the one whose header names it (git quotes unusual paths; then, if every
// file has one, the chunk in the same place).
function chunkOf(file, chunks, index, count) {
  const header = `diff --git a/${file.old_path || file.path} b/${file.path}`;
  return chunks.find((c) => c[0] === header) || (chunks.length === count ? chunks[index] : null);
}

function diffLines(file, chunk) {
  if (file.binary) return el("div", { class: "empty" }, "A binary file: not shown here (the .patch carries it).");
  if (!chunk) return el("div", { class: "empty" }, "Not in the diff shown here: it was cut.");
  // Above the first hunk, the lines that only repeat the file's name (the summary says it) are
  // left out; a mode or a rename is kept.
  const start = chunk.findIndex((line) => line.startsWith("@@"));
  const said = /^(diff --git |index |--- |\+\+\+ )/;
  const head = chunk.slice(0, start < 0 ? chunk.length : start).filter((line) => !said.test(line));
  const hunks = start < 0 ? [] : chunk.slice(start);
  const kind = (line) => line.startsWith("@@") ? "hunk" : line[0] === "+" ? "add" : line[0] === "-" ? "del"
    : line[0] === "\\" ? "meta" : "ctx";
  return el("pre", { class: "diff" }, ...head.map((line) => el("span", { class: "line meta" }, line)),
    ...hunks.map((line) => el("span", { class: `line ${kind(line)}` }, line)));
}

// --- plan ------------------------------------------------------------------------------------

function updatePlan(event) {
  const plan = view.plan;
  if (event.kind === "plan") {
    view.plan = {
      taskId: event.task_id, seq: event.seq,
      items: event.text.split("\n").filter(Boolean).map((line) => ({
        title: line.replace(/^\d+\.\s*/, ""), status: "pending",
      })),
    };
  } else if (plan && plan.taskId === event.task_id) {
    const step = /^step (\d+)(?: (\w+))?/.exec(event.text || "");
    const item = step && plan.items[Number(step[1]) - 1];
    if (event.kind === "step_started" && item) item.status = "running";
    else if (event.kind === "step_finished" && item) item.status = step[2] || "done";
    else if (event.kind === "interrupted" || event.kind === "error") {
      for (const i of plan.items) {
        if (i.status === "pending" || i.status === "running") i.status = event.kind === "error" ? "failed" : "cancelled";
      }
    } else return;
  } else return;
  renderPlan();
}

function renderPlan() {
  const marks = { pending: "○", running: "◔", done: "✓", failed: "✗", cancelled: "–", rewound: "↺" };
  const items = view.plan ? view.plan.items : [];
  $("plan").replaceChildren(...(items.length ? items.map((item, i) => el("li", {
    class: `step status-${item.status}`, "data-status": item.status, "data-step": String(i + 1),
  }, el("span", { class: "mark" }, marks[item.status] || "?"), " ", item.title))
    : [el("li", { class: "empty" }, "No plan yet.")]));
}

async function refreshStatus() {
  const current = view;
  const fresh = newest("status");
  try {
    const status = await api("/status");
    if (!fresh()) return;
    const badge = $("state");
    badge.textContent = status.state;
    badge.className = `badge state-${status.state}`;
    $("interrupt").disabled = status.state !== "running";
    showSource(status.source || null);
    // The event log is the source of the plan; the status fills in only when the log has
    // none (its start was compacted away).
    if (!current.plan && status.plan.length) {
      current.plan = { taskId: status.task_id, seq: 0, items: status.plan.map((p) => ({ ...p })) };
      renderPlan();
    }
  } catch (error) {
    if (!fresh()) return;
    $("state").textContent = error.status === 404 ? "new" : "unknown";
    $("state").className = "badge";
    $("interrupt").disabled = true;
    if (error.status === 404) showSource(null);
  }
}

// While a command is in flight, ask the Sandbox whether it waits in line for one of the host's
// command slots (SANDBOX_MAX_RUNNING_COMMANDS), and say so.
function watchSlot(on) {
  clearInterval(view.slotTimer);
  view.slotTimer = on ? setInterval(refreshSlot, 1000) : null;
  if (on) refreshSlot(); else $("slot").hidden = true;
}

async function refreshSlot() {
  const current = view;
  try {
    const info = await api("/sandbox");
    if (current !== view || !view.slotTimer) return;
    const badge = $("slot");
    badge.hidden = !info.command;
    if (info.command && info.slots) {
      badge.textContent = `${info.command} (${info.slots.in_use}/${info.slots.total} in use, ${info.slots.waiting} waiting)`;
    } else if (info.command) badge.textContent = info.command;
  } catch (_) { /* a passing hiccup: the next tick asks again */ }
}

// --- checkpoints: rewind and fork -----------------------------------------------------------

async function refreshCheckpoints() {
  const fresh = newest("checkpoints");
  let points = [];
  try { points = (await api("/checkpoints")).checkpoints; } catch (_) { /* unknown session: none */ }
  if (!fresh()) return;
  view.checkpoints = new Map(points.map((p) => [p.checkpoint_id, p]));
  document.querySelectorAll("#timeline [data-checkpoint]").forEach(renderStepActions);
}

function renderStepActions(item) {
  const point = view.checkpoints.get(item.dataset.checkpoint);
  const actions = item.querySelector(".step-actions");
  if (!point || point.rewound) actions.replaceChildren();
  else if (!actions.children.length) {
    const act = (fn) => (e) => { e.preventDefault(); e.stopPropagation(); fn(point.checkpoint_id, e.target); };
    actions.replaceChildren(
      el("button", { type: "button", class: "small rewind", onclick: act(rewindTo) }, "rewind to here"),
      el("button", { type: "button", class: "small fork", onclick: act(forkFrom) }, "fork from here"));
  }
}

async function rewindTo(checkpoint, button) {
  button.disabled = true;
  try {
    await post("/rewind", { checkpoint });
    notice("");
  } catch (error) {
    notice(`Rewind failed: ${error.message}`);
  }
  button.disabled = false;
  refreshStatus();
}

async function forkFrom(checkpoint, button) {
  button.disabled = true;
  try {
    const forked = await post("/fork", { checkpoint });
    openSession(forked.session);
  } catch (error) {
    notice(`Fork failed: ${error.message}`);
    button.disabled = false;
  }
}

// A rewind undoes everything after its checkpoint, and the Agent marks those history entries
// rewound: here the events between that step's step_finished and the rewind are dimmed. With
// no such step_finished on the page (a fork's inherited checkpoint, or events compacted
// away), every event before the rewind came after the checkpoint.
function markRewound(event) {
  const anchor = document.querySelector(`#timeline [data-checkpoint="${CSS.escape(event.ref || "")}"]`);
  const from = anchor ? Number(anchor.dataset.seq) : 0;
  for (const node of document.querySelectorAll("#chat [data-seq], #timeline [data-seq]")) {
    const seq = Number(node.dataset.seq);
    if (seq > from && seq < event.seq) node.classList.add("rewound");
  }
  const plan = view.plan;
  const step = Number((/-s(\d+)$/.exec(event.ref || "") || [])[1]);
  if (plan && plan.taskId === event.task_id) plan.items.slice(step).forEach((i) => { i.status = "rewound"; });
  else if (plan && plan.seq > from) plan.items.forEach((i) => { i.status = "rewound"; });
  renderPlan();
  if (view.forkedText) showInherited(); // an inherited entry may be among the rewound ones
}

// A fork's event log starts at its `forked` event; the conversation it carries over is in its
// history, before that event's entry. Shown above it, from the history.
async function showInherited() {
  const fresh = newest("history");
  let entries = [];
  try { entries = (await api("/history")).messages; } catch (_) { return; }
  if (!fresh()) return;
  const at = entries.findLastIndex((h) => h.role === "event" && h.text === view.forkedText);
  const who = { user: ["user", "you"], agent: ["agent", "agent"], event: ["event", "event"] };
  const bubbles = entries.slice(0, Math.max(at, 0)).map((h) => el("div", {
    class: `msg ${who[h.role][0]} inherited${h.rewound ? " rewound" : ""}`, "data-history-seq": String(h.seq),
  }, el("div", { class: "who" }, `${who[h.role][1]} (before the fork)`), el("div", { class: "body" }, h.text),
    verdictOf(h.verdict) ? renderVerdict(h.verdict) : ""));
  const chat = $("chat");
  chat.querySelectorAll(".inherited").forEach((b) => b.remove());
  chat.prepend(...bubbles);
}

// --- approvals -------------------------------------------------------------------------------

async function refreshApprovals() {
  const fresh = newest("approvals");
  let pending = [];
  try { pending = (await api("/approvals")).approvals; } catch (_) { /* unknown session: none */ }
  if (!fresh()) return;
  $("approvals-panel").hidden = pending.length === 0;
  $("approvals").replaceChildren(...pending.map((a) => {
    const reason = el("input", { class: "reason", placeholder: "reason (optional)" });
    const decide = (decision) => async () => {
      try {
        await post(`/approvals/${encodeURIComponent(a.approval_id)}`, { decision, reason: reason.value });
      } catch (error) { notice(`${decision} failed: ${error.message}`); }
      refreshApprovals();
    };
    return el("div", { class: "approval", "data-approval": a.approval_id },
      el("div", { class: "summary" }, a.summary), el("div", { class: "why" }, a.reason), reason,
      el("button", { type: "button", class: "approve", onclick: decide("approve") }, "Approve"),
      el("button", { type: "button", class: "deny danger", onclick: decide("deny") }, "Deny"));
  }));
}

// --- live model text -------------------------------------------------------------------------

function liveOver(delta) {
  return view.settled.has(delta.ref) || view.finishedTasks.has(delta.task_id)
    || (delta.ref.startsWith("plan") && view.plannedTasks.has(delta.task_id));
}

function onDelta(delta) {
  if (liveOver(delta)) return; // its journaled event is already on screen
  let box = [...$("live").children].find((b) => b.dataset.ref === delta.ref);
  if (!box) {
    box = el("div", { class: "live-round", "data-ref": delta.ref, "data-task": delta.task_id || "" },
      el("div", { class: "ref" }, delta.ref), el("pre", {}));
    $("live").append(box);
  }
  const pre = box.querySelector("pre");
  if (delta.snapshot || box.dataset.attempt !== delta.attempt) pre.textContent = ""; // a retry starts over
  box.dataset.attempt = delta.attempt;
  pre.textContent += delta.text;
  pre.scrollTop = pre.scrollHeight;
  $("live-panel").hidden = false;
}

function settleLive(event) {
  if (event.kind === "model_round" && event.ref) view.settled.add(event.ref);
  if (event.kind === "plan") view.plannedTasks.add(event.task_id);
  if (FINISHING.includes(event.kind)) view.finishedTasks.add(event.task_id);
  for (const box of [...$("live").children]) {
    if (liveOver({ ref: box.dataset.ref, task_id: box.dataset.task })) box.remove();
  }
  $("live-panel").hidden = $("live").children.length === 0;
}

// --- workspace -------------------------------------------------------------------------------

async function refreshFiles() {
  const fresh = newest("files");
  let entries;
  try {
    entries = (await api("/files?path=.")).entries;
  } catch (error) {
    if (!fresh()) return;
    $("files").replaceChildren(el("li", { class: "empty" }, error.status === 404 ? "No workspace yet." : error.message));
    // A 5xx or a dropped connection is passing (Restate restarting, a worker replaced):
    // ask again until it answers, so the panel never stays on a stale error.
    if (!(error.status < 500)) later("files", refreshFiles, 2000);
    return;
  }
  if (!fresh()) return;
  $("files").replaceChildren(...(entries.length ? entries.map((e) => el("li", { class: `file kind-${e.kind}` },
    e.kind === "file"
      ? el("a", { href: "#", "data-path": e.path, onclick: (ev) => { ev.preventDefault(); showFile(e.path); } }, e.path)
      : el("span", {}, e.path + (e.kind === "dir" ? "/" : "")),
    el("span", { class: "size" }, e.kind === "file" ? ` ${e.size} B` : "")))
    : [el("li", { class: "empty" }, "The workspace is empty.")]));
}

async function showFile(path) {
  $("file-box").hidden = false;
  $("file-name").textContent = path;
  try {
    $("file-view").textContent = (await api(`/file?path=${encodeURIComponent(path)}`)).content;
  } catch (error) {
    $("file-view").textContent = `(${error.message})`;
  }
}

// --- code: import and export -----------------------------------------------------------------

// An archive or a git source goes to Agent.import, which replaces the workspace (never while a
// task runs: 409) and makes it the baseline every diff is taken against. Its answer, or the
// 4xx that says which entry or cap refused it, shows under the form.
function sizeText(bytes) {
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return bytes >= 1e3 ? `${(bytes / 1e3).toFixed(1)} kB` : `${bytes} B`;
}

function describeSource(source, name) {
  const from = source.kind === "git"
    ? `${source.url}${source.ref ? ` at ${source.ref}` : ""}${source.commit ? ` (${source.commit.slice(0, 7)})` : ""}`
    : name || "an archive";
  const stripped = source.stripped ? `, its top folder ${source.stripped}/ left out` : "";
  return `${source.files} file${source.files === 1 ? "" : "s"} (${sizeText(source.bytes)}) from ${from}${stripped}`;
}

function showSource(source) {
  const box = $("source");
  box.textContent = source ? `Baseline: ${describeSource(source)}.` : "Nothing imported: the workspace starts empty.";
  box.className = source ? "" : "empty";
  $("export-form").hidden = !(source && source.kind === "git");
}

function showResult(id, ok, text) {
  const box = $(id);
  box.hidden = false;
  box.className = `result ${ok ? "result-ok" : "result-bad"}`;
  box.textContent = text;
}

async function importCode(options, what) {
  const current = view;
  showResult("import-result", true, `Importing ${what}…`);
  let answer;
  try {
    answer = await api("/import", { method: "POST", ...options });
  } catch (error) {
    if (view === current) showResult("import-result", false, `Import refused (${error.status || "network"}): ${error.message}`);
    return;
  }
  if (view !== current) return;
  showResult("import-result", true, `Imported ${describeSource(answer, what)}. Each task's changes are shown against it.`);
  showSource(answer);
  refreshStatus();
  refreshFiles();
  refreshCheckpoints();
}

function importArchive(file) {
  if (!view || !file) return;
  importCode({ body: file, headers: { "content-type": "application/octet-stream" } }, file.name);
}

function importGit(event) {
  event.preventDefault();
  const url = $("git-url").value.trim();
  if (!url || !view) return;
  const ref = $("git-ref").value.trim();
  const body = ref ? { git: url, ref } : { git: url };
  importCode({ body: JSON.stringify(body), headers: { "content-type": "application/json" } }, url);
}

// Dragging files over the page shows where they go; dropping one imports it. The counter
// follows dragenter/dragleave, which fire for every element crossed on the way.
function watchDrops() {
  let depth = 0;
  const files = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  const overlay = (on) => {
    $("drop-session").textContent = view ? view.session : "";
    $("drop-overlay").hidden = !on;
  };
  document.addEventListener("dragenter", (e) => { if (files(e)) { depth += 1; overlay(true); } });
  document.addEventListener("dragleave", (e) => {
    if (files(e) && (depth = Math.max(depth - 1, 0)) === 0) overlay(false);
  });
  document.addEventListener("dragover", (e) => { if (files(e)) e.preventDefault(); });
  document.addEventListener("drop", (e) => {
    if (!files(e)) return;
    e.preventDefault(); // not the browser's own "open the file"
    depth = 0;
    overlay(false);
    importArchive(e.dataTransfer.files[0]);
  });
}

// A git import's change, committed on a new branch (pushed if asked) by Agent.export.
async function exportChange(event) {
  event.preventDefault();
  const branch = $("export-branch").value.trim();
  if (!branch || !view) return;
  const message = $("export-message").value.trim();
  const body = { branch, push: $("export-push").checked, ...(message ? { message } : {}) };
  $("export").disabled = true;
  try {
    const done = await post("/export", body);
    const files = `${done.files} file${done.files === 1 ? "" : "s"}`;
    const said = done.note || (done.pushed ? `pushed to ${done.remote}` : "not pushed");
    showResult("export-result", true, `${done.branch} at ${done.commit.slice(0, 12)} (${files}): ${said}`);
  } catch (error) {
    showResult("export-result", false, `Export refused (${error.status || "network"}): ${error.message}`);
  } finally {
    $("export").disabled = false;
  }
}

// --- actions ---------------------------------------------------------------------------------

async function sendMessage(event) {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text || !view) return;
  $("send").disabled = true;
  try {
    await post("/message", { text });
    input.value = "";
    notice("");
    refreshStatus();
  } catch (error) {
    notice(`Sending failed (${error.status || "network"}): ${error.message}`);
  } finally {
    $("send").disabled = false;
  }
}

async function steer(event) {
  event.preventDefault();
  const input = $("steer-input");
  const text = input.value.trim();
  if (!text || !view) return;
  try {
    await post("/steer", { text });
    input.value = "";
  } catch (error) {
    notice(`Steering failed: ${error.message}`);
  }
}

async function interrupt() {
  $("interrupt").disabled = true;
  try {
    await post("/interrupt");
  } catch (error) {
    notice(`Interrupt failed: ${error.message}`);
  }
  refreshStatus();
}

function init() {
  $("new-session").addEventListener("click", () => openSession(newSessionId()));
  $("open-session").addEventListener("submit", (e) => {
    e.preventDefault();
    openSession($("session-input").value.trim());
    $("session-input").value = "";
  });
  $("message-form").addEventListener("submit", sendMessage);
  $("message-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendMessage(e);
  });
  $("steer-form").addEventListener("submit", steer);
  $("interrupt").addEventListener("click", interrupt);
  $("refresh-files").addEventListener("click", () => view && refreshFiles());
  $("import-button").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", (e) => {
    importArchive(e.target.files[0]);
    e.target.value = ""; // the same file chosen again is a new import
  });
  $("git-form").addEventListener("submit", importGit);
  $("export-form").addEventListener("submit", exportChange);
  watchDrops();
  window.addEventListener("hashchange", () => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && (!view || wanted !== view.session)) openSession(wanted);
  });
  fetch("/api/config").then((r) => r.json()).then((c) => { $("restate-ui").href = c.restate_ui; });
  openSession(decodeURIComponent(location.hash.slice(1)) || knownSessions()[0] || newSessionId());
}

init();
