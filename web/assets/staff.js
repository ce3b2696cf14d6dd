// What the staff console's pages share: tables, the reason every look needs, money, request
// deadlines and outcomes. Text is always text (el), never HTML.
import {el, lang, say, t, when} from "./app.js";

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DUE_SOON_DAYS = 7;  // as the privacy service's DUE_SOON_DAYS

/** A table: a caption, column headers and rows of cells (text or elements). */
export function table(caption, headers, rows) {
  return el("table", {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((header) => el("th", {scope: "col"}, header)))),
    el("tbody", {}, rows.length ? rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell ?? "–"))))
      : el("tr", {}, el("td", {colspan: headers.length}, t("staff_no_rows")))));
}

/** A part folded away until opened: `title` (an h3) in its summary. */
export function folded(title, ...children) {
  return el("details", {}, el("summary", {}, el("h3", {}, title)), ...children);
}

/** A list of facts: [[term, value], ...] as a description list. */
export function facts(pairs) {
  return el("dl", {class: "facts"}, pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value ?? "–")]));
}

/** A titled part of the page (h2, or h3 under one) holding `children`. */
export function part(title, level, ...children) {
  return el("section", {}, el(`h${level}`, {}, title), ...children);
}

/** Orders as a table; `action(order)` gives the last cell. */
export function ordersTable(orders, action) {
  return table(t("staff_orders_caption", {count: orders.length}),
    [t("staff_order"), t("staff_created"), t("staff_status"), t("staff_total"), t("staff_refunded"), t("staff_carrier"),
      t("staff_invoice"), t("staff_actions")],
    orders.map((o) => [el("code", {}, o.id), when(o.created_at), named("order_status", o.status),
      money(o.gross_cents, o.currency), o.refunded_cents ? money(o.refunded_cents, o.currency) : "–", o.carrier,
      o.invoice_number, action(o)]));
}

/** Complaints as a table; `action(complaint)` gives the last cell. */
export function complaintsTable(complaints, action = () => "–") {
  return table(t("staff_complaints_caption", {count: complaints.length}),
    [t("staff_complaint"), t("staff_order"), t("staff_complaint_opened"), t("staff_complaint_by"),
      t("staff_complaint_description"), t("staff_status"), t("staff_complaint_resolution"), t("staff_actions")],
    complaints.map((c) => [el("code", {}, c.id), el("code", {}, c.order_id), when(c.opened_at),
      named("opened_by", c.opened_by), c.description, named("complaint_status", c.status),
      c.resolution ? `${c.resolution} (${when(c.resolved_at)})` : "–", action(c)]));
}

/** The reason every look or change needs (10-500 characters, as the APIs demand); says what is
 * wrong and focuses the field when it is too short. */
export function reasonGiven(form, name = "reason") {
  const field = form.elements[name];
  if (field.value.trim().length >= 10) return true;
  say(t("staff_reason_short"), "error");
  field.focus();
  return false;
}

/** An id field holding a UUID (trimmed); otherwise says so and focuses it. */
export function idGiven(form, name) {
  const field = form.elements[name];
  field.value = field.value.trim();
  if (UUID.test(field.value)) return true;
  say(t("staff_id_wrong"), "error");
  field.focus();
  return false;
}

/** A text field of at least `least` characters; otherwise says so and focuses it. */
export function longEnough(form, name, least) {
  const field = form.elements[name];
  if (field.value.trim().length >= least) return true;
  say(least > 1 ? t("staff_text_short", {least}) : t("staff_field_empty"), "error");
  field.focus();
  return false;
}

export function money(cents, currency = "EUR") {
  return new Intl.NumberFormat(lang === "lv" ? "lv-LV" : "en-GB", {style: "currency", currency}).format(cents / 100);
}

/** "12,50" or "12.50" euros as cents; null for an empty field, NaN for nonsense. */
export function cents(value) {
  const text = String(value || "").trim().replace(",", ".");
  if (!text) return null;
  return /^\d+(\.\d{1,2})?$/.test(text) ? Math.round(Number(text) * 100) : NaN;
}

const PLURAL = new Intl.PluralRules(lang === "lv" ? "lv-LV" : "en-GB");

/** `{key}_one` or `{key}_other` as the language says for `count` (1 diena, 21 diena, 2 dienas). */
export function counted(key, count) {
  return t(`${key}_${PLURAL.select(count) === "one" ? "one" : "other"}`, {count});
}

/** The text of a value from a fixed set (`staff_<group>_<value>`), or the value as it is. */
export function named(group, value) {
  if (value === null || value === undefined) return "–";
  const key = `staff_${group}_${value}`;
  const text = t(key);
  return text === key ? String(value) : text;
}

/** Where a request stands against its deadline, in words (not colour alone). */
export function deadline(request, now = new Date()) {
  if (request.state === "completed") return el("span", {}, t("staff_deadline_completed"));
  const left = (new Date(request.due_at) - now) / 86400000;
  if (left < 0) return el("strong", {class: "overdue"}, t("staff_deadline_overdue"));
  if (left <= DUE_SOON_DAYS) return el("strong", {}, counted("staff_deadline_soon", Math.ceil(left)));
  return el("span", {}, t("staff_deadline_on_time"));
}

/** Whom a request is about, in one line. */
export function subjectLine(subject) {
  return [subject.customer_id && t("staff_subject_customer", {id: subject.customer_id}),
    ...(subject.emails || []), ...(subject.phones || [])].filter(Boolean).join(", ") || "–";
}

/** A participant's outcome, in words: what was erased, kept (with why and until when), held, found. */
export function outcomeOf(outcome) {
  if (!outcome) return "–";
  const lines = [];
  for (const e of outcome.erased || []) lines.push(t("staff_outcome_erased", {category: e.category, records: e.records}));
  for (const r of outcome.retained || []) {
    lines.push(t("staff_outcome_retained", {category: r.category, fields: r.fields.join(", "),
      basis: named("basis", r.legal_basis), until: r.until, reason: r.reason}));
  }
  for (const h of outcome.held || []) {
    lines.push(t("staff_outcome_held", {category: h.category, hold: h.hold, until: h.until || t("staff_until_released")}));
  }
  if (outcome.manual !== undefined) lines.push(t("staff_outcome_manual", {outcome: outcome.manual, reason: outcome.reason}));
  if (outcome.records !== undefined) lines.push(t("staff_outcome_records", {value: shown(outcome.records)}));
  if (outcome.corrected !== undefined) lines.push(t("staff_outcome_corrected", {value: shown(outcome.corrected)}));
  if (outcome.withdrawn !== undefined) lines.push(t("staff_outcome_withdrawn", {value: shown(outcome.withdrawn)}));
  if (!lines.length) lines.push("erased" in outcome ? t("staff_outcome_nothing_found") : JSON.stringify(outcome));
  return el("ul", {class: "plain"}, lines.map((line) => el("li", {}, line)));
}

function shown(value) {
  if (Array.isArray(value)) return value.length ? value.map(shown).join(", ") : t("staff_nothing");
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}
