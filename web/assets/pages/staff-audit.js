// The audit log (admin): newest first, by customer, staff member and time, paged; and the check
// of its hash chain. Reading it is itself an entry.
import {api, describe, el, lang, onSubmit, param, requireSession, say, start, t, when} from "../app.js";
import {UUID, named, table} from "../staff.js";

const PAGE = 50;
const filter = document.getElementById("filter");
const older = document.getElementById("older");
let query = null;  // the filter shown, and the page after it
let shown = [];

function actor(value) {
  const [kind, id] = value.split(":");
  if (kind === "staff" && id) {
    return el("a", {href: `/${lang}/staff-audit?staff=${id}`, title: t("staff_audit_by_this_staff")},
      t("staff_audit_actor_staff", {id}));
  }
  return named("actor", kind) + (id ? ` ${id}` : "");
}

function subject(id) {
  return id ? el("a", {href: `/${lang}/staff-audit?subject=${id}`, title: t("staff_audit_about_this_customer")}, id) : "–";
}

function render() {
  document.getElementById("entries").replaceChildren(shown.length
    ? table(t("staff_audit_caption", {count: shown.length}),
      [t("staff_audit_seq"), t("staff_when"), t("staff_audit_kind"), t("staff_audit_service"), t("staff_audit_actor"),
        t("staff_audit_customer"), t("staff_audit_request"), t("staff_audit_categories"), t("staff_audit_action"),
        t("staff_audit_reason")],
      shown.map((e) => [String(e.seq), when(e.at), named("audit_kind", e.kind), named("service", e.service),
        actor(e.actor), subject(e.subject_id), e.request_id
          ? el("a", {href: `/${lang}/staff-request?id=${e.request_id}`}, e.request_id) : "–",
        e.categories.join(", ") || "–", e.action, e.reason]))
    : el("p", {}, t("staff_audit_empty")));
}

async function load(before) {
  const params = new URLSearchParams({...query, limit: String(PAGE)});
  if (before) params.set("before", String(before));
  const page = await api("privacy", `/staff/audit-log?${params}`);
  shown = before ? [...shown, ...page.entries] : page.entries;
  render();
  older.hidden = !page.next_before;
  older.dataset.before = page.next_before || "";
}

/** The filter as the API takes it; null (and the field focused) when a field is wrong. */
function filterOf(form) {
  const out = {};
  for (const name of ["subject", "staff"]) {
    const value = form.elements[name].value.trim();
    if (!value) continue;
    if (!UUID.test(value)) {
      say(t("staff_id_wrong"), "error");
      form.elements[name].focus();
      return null;
    }
    out[name] = value;
  }
  for (const name of ["since", "until"]) {
    const value = form.elements[name].value;
    if (value) out[name] = new Date(value).toISOString();  // RFC 3339 in UTC, as the API asks
  }
  return out;
}

start(async () => {
  if (!requireSession("staff", ["admin"])) return;
  for (const name of ["subject", "staff"]) if (param(name)) filter.elements[name].value = param(name);
  onSubmit(filter, async (data, form) => {
    const wanted = filterOf(form);
    if (!wanted) return;
    query = wanted;
    await load();
  });
  older.addEventListener("click", () => load(Number(older.dataset.before)).catch((error) => say(describe(error), "error")));
  document.getElementById("verify").addEventListener("click", async (event) => {
    event.target.disabled = true;
    const verdict = document.getElementById("verdict");
    try {
      const v = await api("privacy", "/staff/audit-log/verification");
      verdict.replaceChildren(v.intact
        ? el("strong", {}, t("staff_audit_intact", {entries: v.entries, first: v.first_seq ?? "–", last: v.last_seq ?? "–"}))
        : el("strong", {class: "overdue"}, t("staff_audit_broken", {seq: v.finding.seq,
          problem: named("audit_problem", v.finding.problem), detail: v.finding.detail})));
      if (v.last_hash) verdict.append(el("br"), t("staff_audit_last_hash", {hash: v.last_hash}));
    } catch (error) {
      say(describe(error), "error");
    } finally {
      event.target.disabled = false;
    }
  });
  query = filterOf(filter) || {};
  await load();
});
