// Stored traces (GET /v1/traces): the spans of a request, a run or an ingestion job, drawn as
// a waterfall in tree order (each span under its parent), with what a retrieval found.

import { api, el } from "./core.js";
import { formatValue, waterfall } from "./charts.js";

// [{name, start_ms, duration_ms, depth, title}] of one trace, parents before their children.
export function waterfallRows(spans) {
  const start = Math.min(...spans.map((s) => new Date(s.started_at).getTime()));
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const s of spans) {
    const parent = ids.has(s.parent_span_id) ? s.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  const rows = [];
  const visit = (parent, depth) => {
    for (const s of children.get(parent) || []) {
      rows.push({ name: s.name, start_ms: new Date(s.started_at).getTime() - start, duration_ms: s.duration_ms, depth, title: describe(s) });
      visit(s.span_id, depth + 1);
    }
  };
  visit(null, 0);
  return rows;
}

function describe(span) {
  const a = span.attributes || {};
  const parts = [];
  if (a["propylon.retrieval.hits"] !== undefined) parts.push(`${a["propylon.retrieval.hits"]} chunks`);
  if (a["gen_ai.usage.input_tokens"] !== undefined) parts.push(`${a["gen_ai.usage.input_tokens"]}→${a["gen_ai.usage.output_tokens"] ?? 0} tokens`);
  if (a["propylon.cache.status"]) parts.push(`cache ${a["propylon.cache.status"]}`);
  if (span.status === "error") parts.push(`error ${span.status_message || ""}`);
  return parts.join(", ");
}

// The chunks each retrieval found, with their scores.
function retrievals(spans) {
  return spans.filter((s) => (s.attributes || {})["propylon.retrieval.chunk_ids"]).map((s) => {
    const a = s.attributes;
    return el("div", { class: "table-scroll" }, el("table", { class: "retrieval" },
      el("thead", {}, el("tr", {}, el("th", {}, "chunk"), el("th", {}, "document"), el("th", {}, "score"))),
      el("tbody", {}, ...a["propylon.retrieval.chunk_ids"].map((id, i) => el("tr", {}, el("td", {}, String(id)), el("td", {}, (a["propylon.retrieval.document_ids"]?.[i] || "").slice(0, 8)), el("td", {}, formatValue(a["propylon.retrieval.scores"]?.[i], "score")))))));
  });
}

// The newest stored trace of `query` (request_id=…, run_id=… or job_id=…) as a figure and
// its retrievals; null when none is stored (tracing off, or not written yet).
export async function storedTrace(query) {
  const found = await api(`/v1/traces?${query}`);
  if (!found.data.length) return null;
  const { spans, trace_id: id } = found.data[0];
  const figure = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  figure.classList.add("waterfall");
  figure.dataset.trace = id;
  waterfall(figure, waterfallRows(spans));
  return [el("figure", {}, figure, el("figcaption", { class: "muted" }, `trace ${id} · ${spans.length} spans`)), ...retrievals(spans)];
}
