// Propylon web console: plain ES modules, no build step. It only calls the public API with the
// signed-in key, so it can do nothing the key could not do with curl.

import { $, api, el, pct, socket, state } from "./core.js";
import { barChart, formatValue, timeSeries } from "./charts.js";
import { loadExplorer, loadVersions, offerFeedback } from "./explorer.js";
import { storedTrace } from "./traces.js";

// ------------------------------------------------------------ sign in ---

async function signIn(key) {
  state.key = key;
  try {
    await api("/v1/models");
  } catch (error) {
    state.key = "";
    sessionStorage.removeItem("propylon.key");
    $("signin-error").textContent = error.message;
    return;
  }
  sessionStorage.setItem("propylon.key", key);
  $("signin").hidden = true;
  $("tabs").hidden = false;
  $("who").textContent = `key ${key.slice(0, 10)}…`;
  $("sign-out").hidden = false;
  showTab("dashboard");
}

// Forget the key in this tab and show the sign-in form again.
$("sign-out").addEventListener("click", () => {
  for (const ws of state.sockets) ws.close();
  Object.assign(state, { key: "", collection: null, history: [], sockets: [] });
  sessionStorage.removeItem("propylon.key");
  for (const section of document.querySelectorAll(".tab")) section.hidden = true;
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("api-key").value = "";
  $("signin").hidden = false;
});

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("api-key").value.trim());
});

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== name;
  ({ dashboard: loadStats, explorer: loadExplorer, versions: loadVersions, collections: loadCollections, playground: loadModels, jobs: renderJobs })[name]();
}

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

// ---------------------------------------------------------- dashboard ---


async function loadStats() {
  let stats;
  try {
    stats = await api(`/v1/stats?window=${$("window").value}`);
  } catch (error) {
    $("cards").replaceChildren(el("p", { class: "error" }, error.message));
    return;
  }
  const cards = [
    ["Requests", stats.requests],
    ["Requests / min", stats.requests_per_minute.toFixed(2)],
    ["Latency p50", formatValue(stats.latency_ms.p50, "ms")],
    ["Latency p95", formatValue(stats.latency_ms.p95, "ms")],
    ["Cache hit rate", pct(stats.cache.hit_rate)],
    ["Error rate", pct(stats.error_rate)],
    ["Spend", formatValue(stats.cost_usd, "usd")],
    ["Saved by the cache", formatValue(stats.cost_saved_usd, "usd")],
    // Calls Propylon made for itself (ingestion embeddings, RAG's inner calls), kept apart
    // so they never skew the latency and rates of the traffic above.
    ["Internal calls", stats.internal.requests],
    ["Internal latency p95", formatValue(stats.internal.latency_ms.p95, "ms")],
    ["Internal spend", formatValue(stats.internal.cost_usd, "usd")],
  ];
  $("cards").replaceChildren(
    ...cards.map(([label, value]) => el("div", { class: "card" }, el("div", { class: "value" }, value), el("div", { class: "label" }, label))),
  );
  // User traffic only: internal calls have their own cards and never enter these lines.
  const times = stats.per_minute.map((p) => p.minute);
  timeSeries($("chart-rpm"), times, [{ name: "requests", values: stats.per_minute.map((p) => p.requests) }, { name: "internal", values: stats.per_minute.map((p) => p.internal_requests) }], "count");
  timeSeries($("chart-latency"), times, [{ name: "p50", values: stats.per_minute.map((p) => p.latency_ms_p50) }, { name: "p95", values: stats.per_minute.map((p) => p.latency_ms_p95) }, { name: "TTFT p95", values: stats.per_minute.map((p) => p.ttft_ms_p95) }], "ms");
  let saved = 0;
  timeSeries($("chart-saved"), times, [{ name: "saved (cumulative)", values: stats.per_minute.map((p) => (saved += p.cost_saved_usd)) }], "usd");
  barChart($("chart-spend-key"), stats.by_key.map((g) => [g.key_prefix || "?", g.cost_usd]), "usd");
  barChart($("chart-spend-model"), stats.by_model.map((g) => [g.model || "?", g.cost_usd]), "usd");
}

$("refresh-stats").addEventListener("click", loadStats);
$("window").addEventListener("change", loadStats);

// -------------------------------------------------------- collections ---

async function loadCollections() {
  const list = await api("/v1/collections");
  $("collection-list").replaceChildren(
    ...list.data.map((c) =>
      el("li", { class: state.collection?.id === c.id ? "active" : "", onclick: () => openCollection(c) }, c.name),
    ),
  );
}

$("new-collection").addEventListener("submit", async (event) => {
  event.preventDefault();
  const created = await api("/v1/collections", { method: "POST", json: { name: $("collection-name").value.trim() } });
  $("collection-name").value = "";
  await loadCollections();
  openCollection(created);
});

const progressRows = new Map(); // document id -> <progress>

async function openCollection(collection) {
  state.collection = collection;
  $("collection-title").textContent = collection.name;
  $("collection-message").textContent = "";
  $("collection-message").className = "";
  $("upload").hidden = false;
  $("delete-collection").hidden = false;
  for (const ws of state.sockets) ws.close();
  state.sockets = [];
  $("documents").dataset.collection = "";
  try {
    await loadDocuments();
  } catch (error) {
    if (error.status !== 404) throw error;
    closeCollection(); // deleted meanwhile (another tab, curl): say so, drop it from the list
    $("collection-message").className = "error";
    $("collection-message").textContent = `The collection ${collection.name} is gone: ${error.message}`;
    await loadCollections();
    return;
  }
  $("documents").dataset.collection = collection.id; // open: its documents are shown
  socket(`/v1/collections/${collection.id}/events`, onJobEvent);
  loadCollections();
}

function closeCollection() {
  for (const ws of state.sockets) ws.close();
  state.sockets = [];
  state.collection = null;
  progressRows.clear();
  $("collection-title").textContent = "Select a collection";
  $("upload").hidden = true;
  $("delete-collection").hidden = true;
  $("upload-progress").textContent = "";
  $("documents").tBodies[0].replaceChildren();
  $("sources").hidden = true;
  $("sources").tBodies[0].replaceChildren();
}

// The collection with its documents, chunks and index, once confirmed. A collection already
// gone (deleted from another tab, say) is said so and dropped from the list.
$("delete-collection").addEventListener("click", async () => {
  const collection = state.collection;
  if (!collection) return;
  const documents = $("documents").tBodies[0].rows.length;
  const what = documents === 1 ? "its document" : `its ${documents} documents`;
  if (!window.confirm(`Delete the collection ${collection.name} with ${what}? This cannot be undone.`)) return;
  const message = $("collection-message");
  try {
    await api(`/v1/collections/${collection.id}`, { method: "DELETE" });
    closeCollection();
    message.className = "";
    message.textContent = `Deleted the collection ${collection.name}.`;
  } catch (error) {
    if (error.status === 404) closeCollection();
    message.className = "error";
    message.textContent = `Could not delete ${collection.name}: ${error.message}`;
  }
  await loadCollections();
});

async function loadDocuments() {
  const docs = await api(`/v1/collections/${state.collection.id}/documents`);
  loadSources().catch(() => {}); // beside the documents; a failure leaves the last view
  progressRows.clear();
  $("documents").tBodies[0].replaceChildren(
    ...docs.data.map((d) => {
      const bar = el("progress", { max: 1, value: d.status === "ready" ? 1 : 0 });
      progressRows.set(d.job_id, bar);
      return el("tr", { "data-document": d.id },
        el("td", {}, d.filename || d.external_id || d.id),
        el("td", { class: `state-${d.status}` }, d.status,
          d.error ? el("div", { class: "reason" }, d.error) : ""),
        el("td", {}, d.chunk_count ?? ""),
        el("td", {}, bar),
        el("td", {}, el("button", { type: "button", class: "delete", title: "Delete this document", onclick: () => deleteDocument(d) }, "Delete")));
    }),
  );
}

// The collection's sources (url, folder, s3) with their last sync; "Sync now" enqueues one.
async function loadSources() {
  const sources = await api(`/v1/collections/${state.collection.id}/sources`);
  const table = $("sources");
  table.hidden = sources.data.length === 0;
  table.tBodies[0].replaceChildren(
    ...sources.data.map((s) => {
      const where = s.config.url || s.config.path || `${s.config.endpoint}/${s.config.bucket}/${s.config.prefix || ""}`;
      const r = s.last_result;
      const counts = r ? `${r.added} added, ${r.replaced} replaced, ${r.deleted} deleted, ${r.skipped} skipped, ${r.rejected} rejected` : "";
      return el("tr", { "data-source": s.id },
        el("td", {}, `${s.type}: ${where}`, s.interval_s ? el("div", { class: "reason" }, `every ${s.interval_s} s`) : ""),
        el("td", {}, String(s.document_count)),
        el("td", {}, s.last_sync_at ? new Date(s.last_sync_at).toLocaleString() : "never"),
        el("td", { class: "counts" }, counts),
        el("td", {}, el("button", { type: "button", onclick: () => syncSource(s) }, "Sync now")));
    }),
  );
}

async function syncSource(source) {
  try {
    const sync = await api(`/v1/collections/${state.collection.id}/sources/${source.id}/sync`, { method: "POST" });
    $("upload-progress").textContent = `queued sync ${sync.job_id}`;
  } catch (error) {
    $("upload-progress").textContent = error.message;
  }
}

async function deleteDocument(document) {
  const name = document.filename || document.external_id || document.id;
  if (!window.confirm(`Delete ${name} and its chunks?`)) return;
  try {
    await api(`/v1/collections/${state.collection.id}/documents/${document.id}`, { method: "DELETE" });
  } catch (error) {
    $("upload-progress").textContent = error.message;
  }
  await loadDocuments();
}

// Feed messages are a snapshot {type: "snapshot", job} or an event {type, job_id, state, …}.
function jobOf(event) {
  if (event.job) return event.job;
  const known = jobs.get(event.job_id) || { kind: "job" };
  return { ...known, ...event, id: event.job_id };
}

function onJobEvent(event) {
  if (event.type === "error") return;
  const job = jobOf(event);
  if (!job || !job.id) return;
  rememberJob(job);
  const bar = progressRows.get(job.id);
  if (bar) {
    const fraction = job.state === "succeeded" ? 1 : job.progress?.fraction ?? 0;
    bar.value = fraction;
    bar.title = `${job.state} ${job.stage || ""} ${(fraction * 100).toFixed(0)} %`;
    bar.dataset.state = job.state;
  }
  $("upload-progress").textContent = `${job.kind} ${job.state}${job.stage ? ` (${job.stage})` : ""} ${((job.progress?.fraction ?? 0) * 100).toFixed(0)} %`;
  if (["succeeded", "failed", "cancelled"].includes(job.state)) loadDocuments();
}

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("upload-file").files[0];
  const form = new FormData();
  form.append("file", file);
  const accepted = await api(`/v1/collections/${state.collection.id}/documents`, { method: "POST", body: form });
  $("upload-progress").textContent = accepted.duplicate ? "already ingested" : `queued job ${accepted.job_id}`;
  await loadDocuments();
});

// --------------------------------------------------------- playground ---

async function loadModels() {
  const [models, collections] = await Promise.all([api("/v1/models"), api("/v1/collections")]);
  const options = [
    ...models.data.filter((m) => (m.kind || "chat") === "chat").map((m) => m.id),
    ...collections.data.map((c) => `rag/${c.name}`),
  ];
  const current = $("model").value;
  $("model").replaceChildren(...options.map((id) => el("option", { value: id }, id)));
  if (options.includes(current)) $("model").value = current;
}

$("clear-chat").addEventListener("click", () => {
  state.history = [];
  $("transcript").replaceChildren();
});

function addMessage(role, text) {
  const body = el("div", { class: "body" }, text);
  $("transcript").append(el("div", { class: `msg ${role}` }, el("div", { class: "role" }, role), body));
  return body;
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("question").value = "";
  addMessage("user", question);
  state.history.push({ role: "user", content: question });
  const target = addMessage("assistant", "");
  target.classList.add("streaming");
  let answer = "";
  let extension = null;
  let requestId = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ model: $("model").value, messages: state.history, stream: true }),
    });
    requestId = response.headers.get("x-request-id");
    if (!response.ok) {
      const body = await response.json();
      throw new Error(body.error?.message || `HTTP ${response.status}`);
    }
    for await (const data of sseData(response)) {
      if (data.error) throw new Error(data.error.message);
      const delta = data.choices?.[0]?.delta?.content;
      if (delta) {
        answer += delta;
        target.textContent = answer;
      }
      if (data.propylon) extension = data.propylon;
    }
  } catch (error) {
    target.append(el("div", { class: "error" }, error.message));
  }
  target.classList.remove("streaming");
  target.classList.add("done");
  renderCitations(target, answer, extension);
  offerFeedback(target.parentNode, requestId);
  state.history.push({ role: "assistant", content: answer });
});

async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const payload = line.slice(5).trim();
        if (payload === "[DONE]") return;
        yield JSON.parse(payload);
      }
    }
  }
}

// Turn "[n]" markers into links that open the cited passage.
function renderCitations(target, answer, extension) {
  const citations = extension?.citations || [];
  if (!citations.length) return;
  const byNumber = new Map();
  for (const c of citations) {
    const n = c.number ?? c.source ?? c.index;
    if (!byNumber.has(n)) byNumber.set(n, c);
  }
  target.replaceChildren();
  let last = 0;
  for (const match of answer.matchAll(/\[(\d+)\]/g)) {
    target.append(answer.slice(last, match.index));
    const citation = byNumber.get(Number(match[1]));
    target.append(
      citation
        ? el("a", { class: "cite", href: "#", "data-cite": match[1], onclick: (e) => { e.preventDefault(); openPassage(citation); } }, match[0])
        : match[0],
    );
    last = match.index + match[0].length;
  }
  target.append(answer.slice(last));
}

const CONTEXT_CHARS = 600; // of the document, shown before and after the quote

async function openPassage(citation) {
  const title = citation.document_title || citation.filename || citation.document_id || `source ${citation.source}`;
  $("passage-title").textContent = `${title}${citation.page ? `, page ${citation.page}` : ""}`;
  const text = citation.quote || citation.text || "";
  $("passage-text").replaceChildren(el("mark", {}, text));
  $("passage").hidden = false;
  const { collection_id: collection, document_id: documentId, start, end } = citation;
  if (!collection || !documentId || !Number.isInteger(start) || !Number.isInteger(end)) return;
  // The passage in its document: the quote marked, with the text around it.
  const from = Math.max(0, start - CONTEXT_CHARS);
  try {
    const span = await api(`/v1/collections/${collection}/documents/${documentId}/text?start=${from}&end=${end + CONTEXT_CHARS}`);
    const at = start - span.start;
    const length = end - start;
    $("passage-text").replaceChildren(
      span.start > 0 ? "…" : "",
      span.text.slice(0, at),
      el("mark", {}, span.text.slice(at, at + length)),
      span.text.slice(at + length),
      span.end < span.total ? "…" : "",
    );
    $("passage-text").querySelector("mark")?.scrollIntoView({ block: "center" });
  } catch (error) {
    $("passage-text").append(el("p", { class: "error" }, error.message));
  }
}

$("close-passage").addEventListener("click", () => ($("passage").hidden = true));

// ------------------------------------------------------------- jobs ---

const jobs = new Map();
const TERMINAL = ["succeeded", "failed", "cancelled"];
let jobsRefresh = null;

function rememberJob(job) {
  jobs.set(job.id, job);
  if ($("jobs").hidden) return;
  clearTimeout(jobsRefresh); // one refresh for a burst of progress events
  jobsRefresh = setTimeout(renderJobs, 300);
}

// Runs from the API, and the ingestion jobs of each collection's latest documents (so they are
// listed after a reload too); refreshed while the tab shows something unfinished.
async function renderJobs() {
  clearTimeout(jobsRefresh);
  let runItems = [];
  let unfinished = false;
  try {
    const [runs, collections] = await Promise.all([api("/v1/runs"), api("/v1/collections")]);
    runItems = runs.data.map((run) =>
      el("li", { class: "run", onclick: () => followRun(run.id) }, `run ${run.kind} ${run.id.slice(0, 8)}`, el("span", { class: `state-${run.state}` }, run.state)),
    );
    unfinished = runs.data.some((run) => !TERMINAL.includes(run.state));
    const lists = await Promise.all(collections.data.map((c) => api(`/v1/collections/${c.id}/documents?limit=20`)));
    const missing = lists.flatMap((list) => list.data.map((d) => d.job_id))
      .filter((id) => id && !TERMINAL.includes(jobs.get(id)?.state));
    for (const job of await Promise.all(missing.map((id) => api(`/v1/jobs/${id}`).catch(() => null)))) {
      if (job) jobs.set(job.id, job);
    }
  } catch (error) {
    runItems = [el("li", { class: "error" }, error.message)];
  }
  const jobItems = [...jobs.values()].map((job) =>
    el("li", { onclick: () => followJob(job.id) }, `${job.kind} ${job.id.slice(0, 8)}`, el("span", { class: `state-${job.state}` }, job.state)),
  );
  unfinished ||= [...jobs.values()].some((job) => !TERMINAL.includes(job.state));
  $("job-list").replaceChildren(...runItems, ...jobItems);
  if (unfinished && !$("jobs").hidden) jobsRefresh = setTimeout(renderJobs, 2000);
}

// The stored trace of a run or job, drawn under its events. Its spans are written within
// about a second of its end: until then, asked again each second (for a minute at most).
let tracing = 0;
async function showTrace(query, tries = 60) {
  const mine = ++tracing;
  const trace = await storedTrace(query).catch(() => null);
  if (mine !== tracing) return;
  $("job-trace").replaceChildren(el("h3", {}, "Trace"), ...(trace || [el("p", { class: "muted" }, "no stored trace yet (written when it ends)")]));
  if (!trace && tries > 1) setTimeout(() => mine === tracing && showTrace(query, tries - 1), 1000);
}

function followRun(id) {
  $("job-title").textContent = `Events of run ${id}`;
  $("job-events").replaceChildren();
  showTrace(`run_id=${encodeURIComponent(id)}`);
  $("agent-steps").replaceChildren();
  let agent = false;
  let asked = 0;
  let drawn = 0;
  // An agent run is drawn from its row after each event. Its last event is written just
  // before its final state, so the state is taken from that event; a slower, older read
  // never draws over a newer one.
  async function draw(ended) {
    const mine = ++asked;
    const run = await api(`/v1/runs/${id}`);
    if (mine < drawn) return;
    drawn = mine;
    agent = run.kind === "agent";
    if (!agent) return;
    if (ended) Object.assign(run, { state: ended.state, result: ended.data.result ?? run.result, error: ended.data.error ?? run.error });
    renderAgent(run);
  }
  draw(null);
  socket(`/v1/runs/${id}/events`, (event) => {
    const detail = event.type === "token" ? JSON.stringify(event.data.text) : event.data?.step ?? event.data?.error ?? "";
    $("job-events").append(el("li", { value: event.id }, `${event.type} ${detail}`));
    const state = event.type.replace("run_", "");
    if (agent && event.type !== "token") draw(TERMINAL.includes(state) ? { state, data: event.data } : null);
    if (TERMINAL.includes(state)) showTrace(`run_id=${encodeURIComponent(id)}`);
  });
}

// An agent run as its steps: what the model said or asked for, each tool call with its
// arguments and result, and Approve / Deny on a call that waits for a person.
function renderAgent(run) {
  const items = run.steps.map((step, index) => {
    if (step.type === "model") {
      const message = step.message || {};
      const calls = (message.tool_calls || []).map((c) => `${c.function.name}(${c.function.arguments})`);
      const said = message.content || (calls.length ? `asks for ${calls.join(", ")}` : "…");
      return el("li", { class: `agent-model state-${step.state}` }, el("strong", {}, "model "), said);
    }
    const item = el(
      "li",
      { class: `agent-tool state-${step.state}` },
      el("strong", {}, `${step.name} `),
      el("code", {}, JSON.stringify(step.arguments)),
      el("span", { class: `state-${step.state}` }, step.state),
      step.flagged ? el("p", { class: "error" }, `withheld: prompt injection (${step.flagged.score})`) : "",
      step.content ? el("pre", {}, step.content.slice(0, 600)) : "",
    );
    if (step.state === "waiting_for_approval") {
      const decide = (verb) => () => api(`/v1/runs/${run.id}/${verb}`, { method: "POST", json: {} })
        .then(renderAgent)
        .catch((error) => item.append(el("p", { class: "error" }, error.message)));
      item.append(
        el("button", { class: "approve", onclick: decide("approve") }, "Approve"),
        el("button", { class: "deny", onclick: decide("deny") }, "Deny"),
      );
    }
    item.dataset.step = index;
    return item;
  });
  const outcome = run.state === "succeeded" ? run.result.output.text : run.error || run.state.replaceAll("_", " ");
  items.push(el("li", { class: `agent-outcome state-${run.state}` }, el("strong", {}, `${run.state}: `), outcome));
  $("agent-steps").replaceChildren(...items);
}

function followJob(id) {
  $("job-title").textContent = `Events of ${id}`;
  $("job-events").replaceChildren();
  $("agent-steps").replaceChildren();
  showTrace(`job_id=${encodeURIComponent(id)}`);
  socket(`/v1/jobs/${id}/events`, (event) => {
    const job = jobOf(event);
    if (TERMINAL.includes(job.state)) showTrace(`job_id=${encodeURIComponent(id)}`);
    $("job-events").append(el("li", {}, `${event.type || "event"} ${job.state || ""} ${job.stage || ""} ${job.progress?.fraction ?? ""}`));
  });
}

if (state.key) signIn(state.key);
