// clever-gateway dashboard: vanilla JavaScript, no build step. It reads /ui/api/... with the session
// cookie (HttpOnly: this script never sees a token) and sends the session's CSRF token on writes.
// Everything the gateway returns is put on the page as text (textContent), never as HTML.
"use strict";

const PHASES = ["queued", "pending", "running", "restarting", "succeeded", "failed", "suspended", "terminating"];
const FINISHED = new Set(["succeeded", "failed"]);
const REFRESH_MS = 3000;
const LOG_KEEP_CHARS = 2_000_000;

const state = { session: null, timer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const method = options.method || "GET";
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrfToken;
  const response = await fetch(path, { credentials: "same-origin", ...options, method, headers });
  if (response.status === 401) {
    location.assign("/ui/login?next=" + encodeURIComponent(location.pathname));
    throw new ApiError(401, { message: "signed out" });
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { body = { message: response.statusText }; }
    throw new ApiError(response.status, body);
  }
  return response;
}

function phaseBadge(phase) {
  return el("span", { class: `phase ${phase || ""}`, text: phase || "unknown", "data-phase": phase || "" });
}

function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function replicaSummary(job) {
  const pods = (job.status && job.status.replicas) || [];
  return (job.spec.replicas || []).filter((r) => Number(r.count) > 0).map((group) => {
    const mine = pods.filter((p) => p.type === group.type);
    const counts = {};
    for (const pod of mine) counts[pod.status] = (counts[pod.status] || 0) + 1;
    const detail = Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ");
    return `${group.type} ×${group.count}` + (detail ? ` (${detail})` : "");
  }).join(" · ");
}

function jobPath(job) {
  const m = job.metadata;
  return `/ui/jobs/${encodeURIComponent(m.cluster)}/${encodeURIComponent(m.partition)}/${encodeURIComponent(m.id)}`;
}

function apiJobPath(cluster, partition, id) {
  return `/ui/api/clusters/${encodeURIComponent(cluster)}/partitions/${encodeURIComponent(partition)}/tfjobs/` +
    encodeURIComponent(id);
}

function stopTimer() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function showWho() {
  const who = document.getElementById("who");
  const s = state.session;
  who.replaceChildren(
    el("span", { id: "signed-in-user", text: s.user + (s.isAdmin ? " (admin)" : "") }),
    el("form", { method: "post", action: "/ui/logout" },
      el("input", { type: "hidden", name: "csrfToken", value: s.csrfToken }),
      el("button", { type: "submit", id: "sign-out", text: "Sign out" })),
  );
}

// ----- the jobs page

function renderJobs(root) {
  const filters = { cluster: "", partition: "", phase: "", text: "", user: "" };
  const notice = el("div", { id: "list-notice" });
  const body = el("tbody");
  const count = el("span", { class: "muted", id: "job-count" });
  const partitionSelect = el("select", { id: "filter-partition" }, el("option", { value: "", text: "all" }));
  let last = null;

  const controls = el("div", { class: "filters" },
    el("label", {}, "Cluster", el("select", { id: "filter-cluster", onchange: (e) => { filters.cluster = e.target.value; draw(); } },
      el("option", { value: "", text: "all" }), state.session.clusters.map((c) => el("option", { value: c, text: c })))),
    el("label", {}, "Partition", partitionSelect),
    el("label", {}, "Phase", el("select", { id: "filter-phase", onchange: (e) => { filters.phase = e.target.value; draw(); } },
      el("option", { value: "", text: "all" }), PHASES.map((p) => el("option", { value: p, text: p })))),
    el("label", {}, "Name or id", el("input", { id: "filter-text", type: "search", placeholder: "filter",
      oninput: (e) => { filters.text = e.target.value.trim().toLowerCase(); draw(); } })),
    state.session.isAdmin ? el("label", {}, "User (* = everyone)", el("input", { id: "filter-user",
      placeholder: state.session.user, onchange: (e) => { filters.user = e.target.value.trim(); load(); } })) : null,
    count,
  );
  partitionSelect.addEventListener("change", (e) => { filters.partition = e.target.value; draw(); });

  root.replaceChildren(
    el("h1", { text: "Jobs" }),
    el("p", { class: "muted subtitle", text: "Your jobs on every cluster and partition, newest first. The list refreshes by itself." }),
    notice, controls,
    el("div", { class: "card" }, el("table", { id: "jobs" },
      el("thead", {}, el("tr", {}, ["Name", "Id", "Cluster", "Partition", "Phase", "Replicas", "Reason", "Age"]
        .map((h) => el("th", { text: h })))), body)),
  );

  function draw() {
    if (!last) return;
    const partitions = [...new Set(last.partitions.map((p) => p.partition))].sort();
    const chosen = partitionSelect.value;
    partitionSelect.replaceChildren(el("option", { value: "", text: "all" }),
      partitions.map((p) => el("option", { value: p, text: p, selected: p === chosen })));
    const shown = last.items.filter((job) => {
      const m = job.metadata;
      if (filters.cluster && m.cluster !== filters.cluster) return false;
      if (filters.partition && m.partition !== filters.partition) return false;
      if (filters.phase && job.status.phase !== filters.phase) return false;
      if (filters.text && !m.name.toLowerCase().includes(filters.text) && !m.id.includes(filters.text)) return false;
      return true;
    });
    count.textContent = `${shown.length} of ${last.items.length} job(s)` + (last.user === "*" ? " of every user" :
      last.user !== state.session.user ? ` of ${last.user}` : "");
    body.replaceChildren(...shown.map((job) => el("tr", { "data-job-id": job.metadata.id },
      el("td", {}, el("a", { href: jobPath(job), text: job.metadata.name })),
      el("td", { class: "muted", text: job.metadata.id }),
      el("td", { text: job.metadata.cluster }),
      el("td", { text: job.metadata.partition }),
      el("td", {}, phaseBadge(job.status.phase)),
      el("td", { text: replicaSummary(job) }),
      el("td", { class: "wrap", text: job.status.reason || "" }),
      el("td", { text: age(job.metadata.creationTime), title: when(job.metadata.creationTime) }),
    )));
    if (!shown.length) {
      body.append(el("tr", {}, el("td", { colspan: 8, class: "muted",
        text: last.items.length ? "No job matches the filters." :
          "No jobs yet. Create one through the API (POST /api/v1alpha1/clusters/{cid}/partitions/{partition}/tfjobs)." })));
    }
  }

  async function load() {
    try {
      const query = filters.user ? `?user=${encodeURIComponent(filters.user)}` : "";
      last = await (await api("/ui/api/jobs" + query)).json();
      notice.replaceChildren(...last.problems.map((p) =>
        el("div", { class: "notice", text: `${p.cluster}/${p.partition}: ${p.message}` })));
      draw();
    } catch (e) {
      notice.replaceChildren(el("div", { class: "notice error", text: e.message }));
    }
  }

  load();
  state.timer = setInterval(load, REFRESH_MS);
}

// ----- one job's page

function replicaNames(job) {
  const names = [];
  for (const group of job.spec.replicas || []) {
    for (let i = 0; i < Number(group.count); i++) names.push(`${group.type}-${i}`);
  }
  return names;
}

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}

function renderJob(root, cluster, partition, id) {
  const url = apiJobPath(cluster, partition, id);
  const header = el("div");
  const statusCard = el("div", { class: "card", id: "status" });
  const replicasCard = el("div", { class: "card", id: "replicas" });
  const eventsCard = el("div", { class: "card", id: "events" }, el("h2", { text: "Events" }), el("p", { class: "muted", text: "Loading…" }));
  const specCard = el("div", { class: "card", id: "spec" });
  const notice = el("div", { id: "job-notice" });
  const log = { select: el("select", { id: "log-replica" }), tail: el("input", { id: "log-tail", type: "number", min: 0, value: 200 }),
    follow: el("input", { id: "log-follow", type: "checkbox" }), pre: el("pre", { class: "log", id: "log" }),
    status: el("span", { class: "muted", id: "log-status" }), controller: null, retry: null };
  let job = null;
  let gone = false;

  const logCard = el("div", { class: "card", id: "log-card" },
    el("h2", { text: "Log" }),
    el("div", { class: "log-controls" },
      el("label", {}, "Replica ", log.select),
      el("label", {}, "Last lines ", log.tail),
      el("label", {}, log.follow, " Follow"),
      el("button", { id: "log-reload", type: "button", onclick: () => loadLog(false), text: "Reload" }),
      log.status),
    log.pre);
  log.select.addEventListener("change", () => loadLog(false));
  log.follow.addEventListener("change", () => loadLog(false));

  root.replaceChildren(
    el("p", {}, el("a", { href: "/ui", text: "← All jobs" })),
    header, notice,
    el("div", { class: "grid" }, statusCard, replicasCard),
    logCard, eventsCard, specCard,
  );

  function drawHeader() {
    const m = job.metadata;
    header.replaceChildren(
      el("h1", {}, el("span", { id: "job-name", text: m.name }), phaseBadge(job.status.phase),
        el("span", { class: "actions" }, el("button", { class: "danger", id: "delete-job", type: "button", disabled: gone,
          onclick: confirmDelete, text: "Delete" }))),
      el("p", { class: "muted subtitle", text: `${m.id} · cluster ${m.cluster} · partition ${m.partition} · owner ${m.uid} · created ${when(m.creationTime)}` }),
    );
  }

  function draw() {
    drawHeader();
    const s = job.status;
    statusCard.replaceChildren(el("h2", { text: "Status" }), facts([
      ["Phase", s.phase], ["Reason", s.reason], ["Message", s.message], ["Started", when(s.startTime)],
      ["Completed", when(s.completionTime)], ["Duration", s.duration !== null ? `${s.duration} s` : null]]));
    const rows = (s.replicas || []).map((r) => el("tr", { class: "clickable", "data-replica": `${r.type}-${r.index}`,
      title: "Show this replica's log", onclick: () => { log.select.value = `${r.type}-${r.index}`; loadLog(false); } },
      el("td", { text: `${r.type}-${r.index}` }), el("td", { class: "muted", text: r.id }), el("td", { text: r.status }),
      el("td", { text: r.restartCount }), el("td", { text: r.node || "" }), el("td", { text: r.reason || "" }),
      el("td", { text: r.exitCode === null ? "" : r.exitCode }), el("td", { class: "wrap", text: r.message || "" })));
    replicasCard.replaceChildren(el("h2", { text: "Replicas" }), rows.length ? el("table", {},
      el("thead", {}, el("tr", {}, ["Replica", "Pod", "Status", "Restarts", "Node", "Reason", "Exit", "Message"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)) : el("p", { class: "muted", text: "No pods right now." }));
    const names = replicaNames(job);
    if (log.select.options.length !== names.length) {
      const chosen = log.select.value;
      log.select.replaceChildren(...names.map((n) => el("option", { value: n, text: n, selected: n === chosen })));
    }
    const spec = job.spec;
    specCard.replaceChildren(el("h2", { text: "Spec" }), facts([
      ["Description", spec.description], ["Runtime", spec.runtime], ["Bootfile", spec.bootfile],
      ["Arguments", (spec.args || []).join(" ")], ["Working directory", spec.workdir],
      ["Environment", (spec.environmentList || []).join("\n")],
      ["Replicas", (spec.replicas || []).map((r) => `${r.type} ×${r.count}: cpu ${r.resource.cpu}, memory ${r.resource.memory}, gpu ${r.resource.gpu}`).join("\n")],
      ["Checkpoints", spec.checkpointDir], ["Events dir", spec.eventDir], ["Model dir", spec.modelDir], ["Log dir", spec.logDir],
      ["Deadline", spec.activeDeadlineSeconds ? `${spec.activeDeadlineSeconds} s` : null],
      ["Backoff limit", spec.backoffLimit], ["Clean pod policy", spec.cleanPodPolicy],
      ["TTL after finished", spec.ttlSecondsAfterFinished !== null && spec.ttlSecondsAfterFinished !== undefined ? `${spec.ttlSecondsAfterFinished} s` : null]]));
  }

  async function loadJob() {
    try {
      job = await (await api(url)).json();
      draw();
      if (!log.started) { log.started = true; loadLog(false); }
    } catch (e) {
      if (e.status === 404) {
        gone = true;
        stopTimer();
        if (log.controller) log.controller.abort();
        if (!job) {  // never there for this user: nothing else to show
          root.replaceChildren(el("p", {}, el("a", { href: "/ui", text: "← All jobs" })),
            el("div", { class: "notice error", id: "job-notice", text: e.message }));
          return;
        }
        notice.replaceChildren(el("div", { class: "notice error", id: "job-gone", text: "This job no longer exists: " + e.message }));
        drawHeader();
      } else {
        notice.replaceChildren(el("div", { class: "notice error", text: e.message }));
      }
    }
  }

  async function loadEvents() {
    try {
      const events = await (await api(url + "/events")).json();
      eventsCard.replaceChildren(el("h2", { text: `Events (${events.metadata.total})` }), events.items.length ? el("table", { id: "events-table" },
        el("thead", {}, el("tr", {}, ["Last seen", "Type", "Reason", "Object", "Message", "Count"].map((h) => el("th", { text: h })))),
        el("tbody", {}, events.items.map((ev) => el("tr", {},
          el("td", { text: when(ev.lastTime), title: `first: ${when(ev.firstTime)}` }),
          el("td", { class: `event-${ev.type}`, text: ev.type }), el("td", { text: ev.reason || "" }),
          el("td", { class: "muted", text: `${ev.object.kind || ""}/${ev.object.name || ""}` }),
          el("td", { class: "wrap", text: ev.message || "" }), el("td", { text: ev.count }))))) :
        el("p", { class: "muted", text: "No events." }));
    } catch (e) {
      if (e.status !== 404) eventsCard.replaceChildren(el("h2", { text: "Events" }), el("div", { class: "notice error", text: e.message }));
    }
  }

  async function loadLog(append) {
    if (log.controller) log.controller.abort();
    if (log.retry) clearTimeout(log.retry);
    const controller = new AbortController();
    log.controller = controller;
    const replica = log.select.value;
    const follow = log.follow.checked;
    const params = new URLSearchParams({ replica, tail: append ? "0" : String(Math.max(0, Number(log.tail.value) || 0)) });
    if (follow) params.set("follow", "true");
    if (!append) log.pre.textContent = "";
    log.status.textContent = follow ? "following…" : "loading…";
    try {
      const response = await api(`${url}/logs?${params}`, { signal: controller.signal, headers: { Accept: "text/plain" } });
      const pod = response.headers.get("X-Pod") || "";
      if (!follow) {
        log.pre.textContent = await response.text();
        log.status.textContent = `pod ${pod}`;
        log.pre.scrollTop = log.pre.scrollHeight;
        return;
      }
      log.status.textContent = `pod ${pod} · following`;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atBottom = log.pre.scrollTop + log.pre.clientHeight >= log.pre.scrollHeight - 4;
        let text = log.pre.textContent + decoder.decode(value, { stream: true });
        if (text.length > LOG_KEEP_CHARS) text = text.slice(text.length - LOG_KEEP_CHARS);
        log.pre.textContent = text;
        if (atBottom) log.pre.scrollTop = log.pre.scrollHeight;
      }
      log.status.textContent = `pod ${pod} · stream ended`;
      if (log.follow.checked && job && !FINISHED.has(job.status.phase) && !gone && log.controller === controller) {
        log.retry = setTimeout(() => loadLog(true), REFRESH_MS);  // the bounds of one follow were reached
      }
    } catch (e) {
      if (e.name === "AbortError") return;
      log.status.textContent = "";
      log.pre.textContent = e.message;
      if (follow && e.status === 409 && !gone) log.retry = setTimeout(() => loadLog(false), REFRESH_MS);  // no pod yet
    }
  }

  function confirmDelete() {
    const dialog = document.getElementById("confirm-delete");
    document.getElementById("confirm-text").textContent =
      `Job ${job.metadata.name} (${job.metadata.id}) will be deleted on cluster ${job.metadata.cluster}: its pods stop and it leaves the list.`;
    dialog.returnValue = "";
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "delete") return;
      try {
        await api(url, { method: "DELETE" });
        location.assign("/ui?deleted=" + encodeURIComponent(job.metadata.name));
      } catch (e) {
        notice.replaceChildren(el("div", { class: "notice error", text: "Not deleted: " + e.message }));
      }
    }, { once: true });
    dialog.showModal();
  }

  async function tick() {
    await loadJob();
    if (!gone) await loadEvents();
  }
  tick();
  state.timer = setInterval(tick, REFRESH_MS);
}

// ----- start

async function start() {
  const root = document.getElementById("app");
  try {
    state.session = await (await api("/ui/api/session")).json();
  } catch (e) {
    root.replaceChildren(el("div", { class: "notice error", text: e.message }));
    return;
  }
  showWho();
  stopTimer();
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 5 && parts[1] === "jobs") {
    document.title = `${parts[4]} · clever-gateway`;
    renderJob(root, parts[2], parts[3], parts[4]);
  } else {
    const deleted = new URLSearchParams(location.search).get("deleted");
    renderJobs(root);
    if (deleted) root.prepend(el("div", { class: "notice", id: "deleted-notice", text: `Job ${deleted} was deleted.` }));
  }
}

document.addEventListener("DOMContentLoaded", start);
