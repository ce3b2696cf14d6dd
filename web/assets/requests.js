// Data-subject requests as the customer's and the guest's pages show them: the form that asks
// for one, a request with each participant's progress and outcome, and the export's download.
import {api, day, el, lang, param, t, when} from "./app.js";

const PLURAL = new Intl.PluralRules(lang);

/** `<key>_zero`, `_one` or `_other` for `count`, as the language's plural rules choose. */
export function counted(key, count) {
  const form = PLURAL.select(count);
  return t(`${key}_${form === "zero" || form === "one" ? form : "other"}`, {count});
}

// The services declare their categories and reasons in English; the notice's glossary has the
// Latvian of each (services/privacy/notice_lv.py). One it lacks is shown as declared.
let glossary = {};

export async function loadGlossary() {
  if (lang !== "lv") return;
  try {
    glossary = (await api("privacy", `/privacy-notice/data?lang=${lang}`, {auth: false})).glossary || {};
  } catch { /* shown as declared */ }
}

const declared = (text) => glossary[text] ?? text;

// --- asking -------------------------------------------------------------------------------

const WITHDRAWALS = {
  all: {}, email: {purpose: "direct_marketing", channel: "email"}, sms: {purpose: "direct_marketing", channel: "sms"},
  direct_marketing: {purpose: "direct_marketing"}, profiling: {purpose: "profiling"},
};

function withdrawalChoice(details) {
  if (details.channel) return details.channel;
  return details.purpose || "all";
}

/** The request the form asks for, as the privacy service takes it; null (and said why) when
 * a correction names nothing to correct. */
export function requestOf(form) {
  const data = new FormData(form);
  const kind = data.get("kind");
  if (kind === "rectification") {
    const asked = {kind};
    for (const field of ["name", "phone"]) {
      const value = String(data.get(field) || "").trim();
      if (value) asked[field] = value;
    }
    return asked.name || asked.phone ? asked : null;
  }
  if (kind === "objection") return {kind, purpose: data.get("objection_purpose")};
  if (kind === "withdrawal") return {kind, ...WITHDRAWALS[data.get("withdrawal_what")]};
  return {kind};
}

/** Show the part of the form the chosen kind needs (`data-kind`), hide the others; a
 * `?kind=` in the address chooses one. */
export function wireKinds(form) {
  const asked = param("kind");
  const choice = asked && form.querySelector(`input[name=kind][value="${CSS.escape(asked)}"]`);
  if (choice) choice.checked = true;
  const show = () => {
    const kind = new FormData(form).get("kind");
    for (const part of form.querySelectorAll("[data-kind]")) part.hidden = part.dataset.kind !== kind;
  };
  form.addEventListener("change", show);
  show();
}

// --- a request ----------------------------------------------------------------------------

export const kindName = (kind) => t(`kind_${kind}`);

/** What was asked beyond the kind: the corrected name and phone, the purpose. */
export function detailsOf(kind, details = {}) {
  const parts = [];
  if (details.name) parts.push(t("detail_name", {name: details.name}));
  if (details.phone) parts.push(t("detail_phone", {phone: details.phone}));
  if (kind === "objection" && details.purpose) parts.push(t(`objection_${details.purpose}`));
  if (kind === "withdrawal") parts.push(t(`withdraw_${withdrawalChoice(details)}`));
  return parts.join("; ");
}

export function participantName(participant) {
  return participant.startsWith("partner:") ? t("participant_partner", {name: participant.slice(8)})
    : t(`participant_${participant}`);
}

// A date at the calendar's end is how a participant says a record has no end date of its own.
const until = (date) => (String(date).startsWith("9999") ? t("until_no_end") : t("until_day", {day: day(date)}));

/** What a participant did, in lines: what was erased, kept (why, until when) or held; what it copied. */
function outcomeOf(task, kind) {
  const o = task.outcome || {};
  const lines = [];
  if (o.manual) lines.push(t("outcome_manual", {what: o.manual}));
  for (const e of o.erased || []) {
    lines.push(t("outcome_erased", {category: declared(e.category), records: counted("records", e.records)}));
  }
  for (const r of o.retained || []) {
    lines.push(t("outcome_retained", {category: declared(r.category), basis: t(`basis_${r.legal_basis}`),
      reason: declared(r.reason), until: until(r.until)}));
  }
  for (const h of o.held || []) {
    lines.push(h.until ? t("outcome_held_until", {category: declared(h.category), hold: h.hold, until: day(h.until)})
      : t("outcome_held", {category: declared(h.category), hold: h.hold}));
  }
  if (kind === "erasure" && task.state === "done" && !o.manual && !lines.length && o.records_erased === undefined) {
    lines.push(t("outcome_nothing_held"));
  }
  if (o.records !== undefined) {
    lines.push(kind === "export" ? t("outcome_copied", {records: counted("records", o.records)}) : t("outcome_applied"));
  }
  if (o.records_erased !== undefined) lines.push(t("outcome_erased_by_processor", {records: counted("records", o.records_erased)}));
  if (o.records_rectified !== undefined) lines.push(t("outcome_rectified_by_processor", {records: counted("records", o.records_rectified)}));
  if (o.applied) lines.push(t("outcome_applied"));
  if (o.withdrawn !== undefined) lines.push(t("outcome_withdrawn", {count: o.withdrawn}));
  if (o.corrected) {
    lines.push(o.corrected.length ? t("outcome_corrected", {fields: o.corrected.map((f) => t(`field_${f}`)).join(", ")})
      : t("outcome_nothing_to_correct"));
  }
  if (task.state !== "done" && task.remaining?.length) {
    lines.push(t("outcome_remaining", {categories: task.remaining.map(declared).join(", ")}));
  }
  if (!lines.length) return "–";
  return lines.length === 1 ? lines[0] : el("ul", {class: "plain"}, lines.map((line) => el("li", {}, line)));
}

const byParticipant = (a, b) => Number(a.participant.startsWith("partner:")) - Number(b.participant.startsWith("partner:"))
  || a.participant.localeCompare(b.participant);

/** A request as the page shows it: its facts, then each participant's state and outcome. */
export function requestView(view) {
  const details = detailsOf(view.kind, view.details);
  const facts = el("dl", {class: "facts"},
    el("dt", {}, t("request_kind")), el("dd", {}, kindName(view.kind), details ? ` (${details})` : ""),
    el("dt", {}, t("request_state")), el("dd", {"data-state": view.state}, t(`request_state_${view.state}`)),
    el("dt", {}, t("request_received")), el("dd", {}, when(view.received_at)),
    el("dt", {}, t("request_due")), el("dd", {}, day(view.due_at),
      view.extension_reason ? ` — ${t("request_extended", {reason: view.extension_reason})}` : ""),
    view.completed_at ? [el("dt", {}, t("request_completed")), el("dd", {}, when(view.completed_at))] : null);
  const rows = [...view.tasks].sort(byParticipant).map((task) => el("tr", {"data-participant": task.participant},
    el("th", {scope: "row"}, participantName(task.participant)),
    el("td", {}, t(`task_${task.state}`)),
    el("td", {}, outcomeOf(task, view.kind))));
  const table = el("table", {id: "participants"},
    el("caption", {}, t("participants_caption")),
    el("thead", {}, el("tr", {}, el("th", {scope: "col"}, t("participant")), el("th", {scope: "col"}, t("task_state")),
      el("th", {scope: "col"}, t("outcome")))),
    el("tbody", {}, rows));
  return [facts, table];
}

/** The customer's or guest's list of requests, as table rows linking each to its page. */
export function requestRow(view, href) {
  return el("tr", {},
    el("th", {scope: "row"}, el("a", {href}, kindName(view.kind))),
    el("td", {}, when(view.received_at)),
    el("td", {}, day(view.due_at)),
    el("td", {"data-state": view.state}, t(`request_state_${view.state}`)));
}

// --- the export ---------------------------------------------------------------------------

/** Offer a downloaded file (the export's ZIP) to be saved, under the name the service gave it. */
export async function save(response, fallback) {
  const blob = await response.blob();
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const url = URL.createObjectURL(blob);
  const link = el("a", {href: url, download: named ? named[1] : fallback, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);  // after the browser has taken it
}

export const ZIP = {Accept: "application/zip, application/problem+json"};
