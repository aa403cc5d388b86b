// The requests explorer (a live, filtered list of the request log and one request in full),
// the prompt versions compared, and feedback from the playground. Everything comes from the
// public API with the signed-in key: /v1/logs, /v1/logs/{id}, /v1/traces,
// /v1/stats/prompt-versions, /v1/feedback.

import { $, api, el } from "./core.js";
import { formatValue, timeSeries, waterfall } from "./charts.js";
import { storedTrace } from "./traces.js";

const RANGES = { "15m": 15, "1h": 60, "24h": 1440, "7d": 10080 };
const LIVE_MS = 5000;
let live = null;

// ----------------------------------------------------------- the list ---

function filterQuery() {
  const params = new URLSearchParams({ limit: "50" });
  const minutes = RANGES[$("f-range").value] || 60;
  params.set("since", new Date(Date.now() - minutes * 60_000).toISOString());
  for (const [id, name] of [["f-model", "model"], ["f-status", "status"], ["f-cache", "cache_status"], ["f-guard", "guard"], ["f-key", "key_prefix"], ["f-text", "q"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  const label = $("f-metadata").value.trim();
  if (label.includes("=")) {
    const cut = label.indexOf("=");
    params.set(`metadata.${label.slice(0, cut).trim()}`, label.slice(cut + 1).trim());
  }
  return params;
}

const guardOf = (row) => row.guard?.action || "–";
const prompt = (row) => (row.metadata?.prompt_name ? `${row.metadata.prompt_name}${row.metadata.prompt_version ? `@${row.metadata.prompt_version}` : ""}` : "");
const tokens = (row) => (row.prompt_tokens ?? row.completion_tokens ?? null) === null ? "–" : `${row.prompt_tokens ?? 0}→${row.completion_tokens ?? 0}`;

export async function loadExplorer() {
  clearTimeout(live);
  let page;
  try {
    page = await api(`/v1/logs?${filterQuery()}`);
    $("explorer-error").textContent = "";
  } catch (error) {
    $("explorer-error").textContent = error.message;
    return;
  }
  $("requests").tBodies[0].replaceChildren(
    ...page.data.map((row) =>
      el("tr", { "data-id": row.id, class: row.error_type ? "failed" : "", onclick: () => openRequest(row.id) },
        el("td", {}, new Date(row.created_at).toISOString().slice(5, 19).replace("T", " ")),
        el("td", {}, row.requested_model || row.endpoint),
        el("td", {}, row.deployment || "–"),
        el("td", { class: row.status >= 400 ? "state-failed" : "" }, row.status),
        el("td", {}, formatValue(row.latency_ms, "ms")),
        el("td", {}, formatValue(row.ttft_ms, "ms")),
        el("td", {}, tokens(row)),
        el("td", {}, formatValue(row.cost_usd, "usd")),
        el("td", {}, row.cache_status || "–"),
        el("td", {}, guardOf(row)),
        el("td", {}, prompt(row)),
        el("td", {}, row.key_prefix || "–"),
        el("td", {}, row.feedback_score === null || row.feedback_score === undefined ? "" : row.feedback_score.toFixed(2)),
      ),
    ),
  );
  $("explorer-count").textContent = `${page.data.length}${page.has_more ? "+" : ""} requests`;
  if ($("f-live").checked && !$("explorer").hidden) live = setTimeout(loadExplorer, LIVE_MS);
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  loadExplorer();
});
$("f-live").addEventListener("change", loadExplorer);

// ------------------------------------------------------ one request ---

function text(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => part.text ?? (part.type ? `[${part.type}]` : JSON.stringify(part))).join("\n");
  return JSON.stringify(content, null, 2);
}

function bubble(role, content, extra) {
  return el("div", { class: `msg ${role}` }, el("div", { class: "role" }, role), el("div", { class: "body" }, text(content)), extra || "");
}

function chat(detail) {
  if (detail.content_withheld) return [el("p", { class: "muted" }, "Prompts and answers are withheld: this key lacks the logs:read feature.")];
  const messages = Array.isArray(detail.messages) ? detail.messages.map((m) => bubble(m.role || "user", m.content)) : detail.messages ? [bubble("input", detail.messages)] : [];
  const answers = Array.isArray(detail.answer) ? detail.answer : [detail.answer];
  for (const answer of answers) {
    if (answer === null || answer === undefined) continue;
    const body = typeof answer === "object" ? answer.content : answer;
    const called = typeof answer === "object" && answer.tool_calls?.length ? `(calls ${answer.tool_calls.map((t) => t.function?.name ?? t).join(", ")})` : "";
    messages.push(bubble("assistant", body || called));
  }
  if (!messages.length) messages.push(el("p", { class: "muted" }, `No content was captured (policy: ${detail.content_policy}).`));
  return messages;
}

function table(headings, rows) {
  return el("div", { class: "table-scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h)))), el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c)))))));
}

// Without a stored trace (tracing off, or not written yet): the request and the calls made
// for it, placed in time from the log's rows.
function spansOf(detail) {
  const start = new Date(detail.created_at).getTime();
  const spans = [{ name: `${detail.endpoint} ${detail.requested_model || ""}`, start_ms: 0, duration_ms: detail.latency_ms, depth: 0 }];
  if (detail.overhead.guard_ms) spans.push({ name: "guard", start_ms: 0, duration_ms: detail.overhead.guard_ms, depth: 1 });
  for (const child of detail.children) {
    spans.push({ name: `${child.endpoint} ${child.requested_model || ""}`, start_ms: Math.max(new Date(child.created_at).getTime() - start, 0), duration_ms: child.latency_ms, depth: 1 });
  }
  let at = Math.max(detail.latency_ms - (detail.upstream_ms || 0), 0);
  for (const attempt of detail.attempts || []) {
    if (attempt.outcome === "skipped") continue;
    spans.push({ name: `${attempt.deployment} ${attempt.outcome}`, start_ms: Math.min(at, detail.latency_ms), duration_ms: attempt.ms, depth: 2 });
    at += attempt.ms;
  }
  return spans;
}

export async function openRequest(id) {
  let detail;
  try {
    detail = await api(`/v1/logs/${id}`);
  } catch (error) {
    $("request-detail").replaceChildren(el("p", { class: "error" }, error.message));
    return;
  }
  for (const row of $("requests").tBodies[0].rows) row.classList.toggle("active", row.dataset.id === String(detail.id));
  let trace = await storedTrace(`request_id=${encodeURIComponent(detail.request_id)}`).catch(() => null);
  if (trace) {
    trace[0].querySelector("svg").id = "waterfall";
  } else {
    const figure = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    figure.id = "waterfall";
    waterfall(figure, spansOf(detail));
    trace = [el("figure", {}, figure, el("figcaption", { class: "muted" }, "rebuilt from the request log (no stored trace)"))];
  }
  const o = detail.overhead;
  $("request-detail").replaceChildren(
    el("h2", {}, `Request ${detail.request_id}`),
    el("p", { class: "muted" }, `${detail.created_at} · ${detail.endpoint} · status ${detail.status}${detail.error_code ? ` (${detail.error_code})` : ""} · key ${detail.key_prefix || "–"}`),
    el("h3", {}, "Conversation"),
    el("div", { class: "transcript chat" }, ...chat(detail)),
    detail.tool_calls.length ? el("h3", {}, "Tool calls") : "",
    detail.tool_calls.length ? el("pre", { class: "tools" }, JSON.stringify(detail.tool_calls, null, 2)) : "",
    el("h3", {}, "Trace"),
    ...trace,
    el("h3", {}, "Route"),
    table(["deployment", "outcome", "time"], (detail.attempts || []).map((a) => [a.deployment, a.outcome, formatValue(a.ms, "ms")])),
    el("h3", {}, "Time"),
    table(["latency", "first token", "upstream", "Propylon", "guard"], [[formatValue(o.latency_ms, "ms"), formatValue(o.ttft_ms, "ms"), formatValue(o.upstream_ms, "ms"), formatValue(o.overhead_ms, "ms"), formatValue(o.guard_ms, "ms")]]),
    detail.children.length ? el("h3", {}, "Calls made for it") : "",
    detail.children.length ? table(["call", "model", "status", "time", "cost"], detail.children.map((c) => [c.endpoint, c.requested_model || "–", c.status, formatValue(c.latency_ms, "ms"), formatValue(c.cost_usd, "usd")])) : "",
    el("h3", {}, "Headers"),
    table(["header", "value"], Object.entries(detail.headers || {}).map(([k, v]) => [k, v])),
    el("h3", {}, "Metadata"),
    el("pre", {}, JSON.stringify(detail.metadata || {}, null, 2)),
    el("h3", {}, `Feedback${detail.feedback_score === null ? "" : ` (mean ${detail.feedback_score.toFixed(2)})`}`),
    detail.feedback.length ? table(["when", "score", "comment"], detail.feedback.map((f) => [f.created_at.slice(0, 19), f.kind === "thumbs" ? (f.score ? "▲ up" : "▼ down") : f.score, f.comment || ""])) : el("p", { class: "muted" }, "none yet"),
  );
  $("request-detail").hidden = false;
}

// ---------------------------------------------------- prompt versions ---

const VERSION_FIELDS = [
  ["requests", "count"],
  ["error_rate", "ratio"],
  ["latency_ms_p50", "ms"],
  ["latency_ms_p95", "ms"],
  ["prompt_tokens_per_request", "count"],
  ["completion_tokens_per_request", "count"],
  ["cost_usd_per_request", "usd"],
  ["cache_hit_rate", "ratio"],
  ["guard_flags", "count"],
  ["feedback_score", "count"],
];
let versions = [];

export async function loadVersions() {
  let names;
  try {
    const page = await api(`/v1/stats/prompt-versions?window=${$("v-window").value}`);
    names = [...new Set(page.data.map((v) => v.prompt_name))];
    $("versions-error").textContent = "";
  } catch (error) {
    $("versions-error").textContent = error.message;
    return;
  }
  const current = $("v-prompt").value;
  $("v-prompt").replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  if (names.includes(current)) $("v-prompt").value = current;
  await loadPrompt();
}

// One prompt's versions, each with its time series.
async function loadPrompt() {
  const name = $("v-prompt").value;
  versions = [];
  if (name) {
    try {
      const page = await api(`/v1/stats/prompt-versions?window=${$("v-window").value}&prompt_name=${encodeURIComponent(name)}`);
      versions = page.data;
    } catch (error) {
      $("versions-error").textContent = error.message;
    }
  }
  renderVersions();
}

function renderVersions() {
  const mine = versions.filter((v) => v.prompt_name === $("v-prompt").value);
  $("versions-table").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "version"), ...VERSION_FIELDS.map(([f]) => el("th", {}, f.replaceAll("_", " "))))),
    el("tbody", {}, ...mine.map((v) => el("tr", {}, el("td", {}, v.prompt_version ?? "–"), ...VERSION_FIELDS.map(([f, unit]) => el("td", {}, formatValue(v[f], unit)))))),
  );
  for (const select of [$("v-a"), $("v-b")]) {
    const chosen = select.value;
    select.replaceChildren(...mine.map((v) => el("option", { value: v.prompt_version ?? "" }, v.prompt_version ?? "–")));
    if (mine.some((v) => (v.prompt_version ?? "") === chosen)) select.value = chosen;
  }
  if (mine.length > 1 && $("v-a").value === $("v-b").value) $("v-b").selectedIndex = 1;
  compareVersions();
}

function compareVersions() {
  const mine = versions.filter((v) => v.prompt_name === $("v-prompt").value);
  const a = mine.find((v) => (v.prompt_version ?? "") === $("v-a").value);
  const b = mine.find((v) => (v.prompt_version ?? "") === $("v-b").value);
  if (!a || !b) {
    $("compare").replaceChildren();
    return versionCharts([]);
  }
  versionCharts(a === b ? [a] : [a, b]);
  $("compare").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, `A: ${a.prompt_version}`), el("th", {}, `B: ${b.prompt_version}`), el("th", {}, "B − A"))),
    el("tbody", {}, ...VERSION_FIELDS.map(([f, unit]) => {
      const delta = a[f] !== null && b[f] !== null ? b[f] - a[f] : null;
      return el("tr", {}, el("th", {}, f.replaceAll("_", " ")), el("td", {}, formatValue(a[f], unit)), el("td", {}, formatValue(b[f], unit)), el("td", {}, delta === null ? "–" : `${delta > 0 ? "+" : ""}${formatValue(delta, unit)}`));
    })),
  );
}

// The compared versions over time, one line each (percentiles: a line per percentile).
const VERSION_CHARTS = [
  ["v-chart-latency", "ms", [["latency_ms_p50", "p50"], ["latency_ms_p95", "p95"]]],
  ["v-chart-requests", "count", [["requests", ""]]],
  ["v-chart-errors", "ratio", [["error_rate", ""]]],
  ["v-chart-cost", "usd", [["cost_usd_per_request", ""]]],
  ["v-chart-feedback", "score", [["feedback_score", ""]]],
];

function versionCharts(chosen) {
  const times = [...new Set(chosen.flatMap((v) => (v.series || []).map((p) => p.time)))].sort();
  for (const [id, unit, fields] of VERSION_CHARTS) {
    const series = chosen.flatMap((v) => {
      const at = new Map((v.series || []).map((p) => [p.time, p]));
      return fields.map(([field, label]) => ({
        name: `${v.prompt_version ?? "–"}${label ? ` ${label}` : ""}`,
        values: times.map((t) => at.get(t)?.[field] ?? null),
      }));
    });
    timeSeries($(id), times, series, unit);
  }
}

$("v-window").addEventListener("change", loadVersions);
$("v-prompt").addEventListener("change", loadPrompt);
$("v-a").addEventListener("change", compareVersions);
$("v-b").addEventListener("change", compareVersions);

// ----------------------------------------------------------- feedback ---

// Thumbs under a playground answer: posted as feedback on its request.
export function offerFeedback(target, requestId) {
  if (!requestId) return;
  const status = el("span", { class: "muted" }, "");
  const send = async (score) => {
    try {
      await api("/v1/feedback", { method: "POST", json: { request_id: requestId, score } });
      status.textContent = "thanks";
      for (const b of buttons) b.disabled = true;
    } catch (error) {
      status.textContent = error.message;
      status.className = "error";
    }
  };
  const buttons = [
    el("button", { type: "button", class: "thumb", title: "Good answer", "aria-label": "thumbs up", onclick: () => send("up") }, "▲ good"),
    el("button", { type: "button", class: "thumb", title: "Bad answer", "aria-label": "thumbs down", onclick: () => send("down") }, "▼ bad"),
  ];
  target.append(el("div", { class: "feedback" }, ...buttons, status));
}
