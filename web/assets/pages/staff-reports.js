// The retention report (support, admin) and the record of processing (every staff role), read
// from the privacy service's JSON and shown as tables.
import {api, describe, el, hasRole, requireSession, say, start, t, when} from "../app.js";
import {counted, facts, folded, named, part, table} from "../staff.js";

function retentionTable(caption, rows) {
  return table(caption, [t("staff_retention_service"), t("staff_retention_category"), t("staff_retention_period"),
    t("staff_retention_after"), t("staff_retention_oldest"), t("staff_retention_due"), t("staff_retention_records"),
    t("staff_retention_past_due"), t("staff_retention_state")],
  rows.map((r) => [named("service", r.participant), `${r.category} (${r.table})`,
    counted("staff_days", r.period_days), r.after, when(r.oldest), when(r.due), String(r.records), String(r.past_due),
    r.error ? el("strong", {class: "overdue"}, t("staff_retention_unreadable", {error: r.error}))
      : r.overdue ? el("strong", {class: "overdue"}, t("staff_deadline_overdue")) : t("staff_retention_in_time")]));
}

function retentionView(report) {
  const s = report.summary;
  const attention = report.rows.filter((r) => r.overdue || r.error);
  return [
    el("p", {}, s.ok ? t("staff_retention_ok", {at: when(report.at)})
      : el("strong", {class: "overdue"}, t("staff_retention_not_ok", {at: when(report.at), overdue: s.overdue,
        unreadable: s.unreadable, unreachable: [...s.unreachable, ...s.failed].map((p) => named("service", p)).join(", ")
          || t("staff_nothing")}))),
    table(t("staff_retention_participants"), [t("staff_retention_service"), t("staff_status"), t("staff_retention_why"),
      t("staff_retention_read_at")], report.participants.map((p) => [named("service", p.participant),
      p.state === "answered" ? named("answer", p.state) : el("strong", {class: "overdue"}, named("answer", p.state)),
      p.error, when(p.at)])),
    attention.length ? retentionTable(t("staff_retention_attention", {count: attention.length}), attention) : null,
    folded(t("staff_retention_rows", {count: report.rows.length}), retentionTable(t("staff_retention_rows_caption"), report.rows)),
  ];
}

function recordView(record) {
  const c = record.controller;
  return [
    part(t("staff_record_controller"), 3, facts([[t("staff_name"), c.name], [t("staff_record_contact"), c.contact],
      [t("staff_record_authority"), c.supervisory_authority]])),
    folded(t("staff_record_activities"), table(t("staff_record_activities_caption", {count: record.activities.length}),
      [t("staff_retention_service"), t("staff_retention_category"), t("staff_record_fields"), t("staff_purpose"),
        t("staff_record_basis"), t("staff_record_retention"), t("staff_record_recipients"), t("staff_record_clauses")],
      record.activities.map((a) => [named("service", a.participant), `${a.category} (${a.table})`, a.fields.join(", "),
        a.purpose, named("basis", a.legal_basis), retention(a.retention),
        [...a.recipients, ...a.processors].join(", ") || "–", a.clauses.join(", ")]))),
    folded(t("staff_record_processors"), record.processors.length
      ? table(t("staff_record_processors_caption", {count: record.processors.length}),
        [t("staff_name"), t("staff_webhooks_kind"), t("staff_webhooks_data"), t("staff_record_description"), t("staff_source")],
        record.processors.map((p) => [p.name, named("partner_kind", p.kind), p.data_categories.join(", "), p.description,
          p.source]))
      : el("p", {}, t("staff_record_no_processors"))),
    folded(t("staff_record_measures"), table(t("staff_record_measures_caption", {count: record.security_measures.length}),
      [t("staff_record_measure"), t("staff_record_mechanism"), t("staff_record_clauses")],
      record.security_measures.map((m) => [m.measure, el("code", {}, m.mechanism), m.clauses.join(", ")]))),
    folded(t("staff_record_trace"), table(t("staff_record_trace_caption", {count: record.clauses.length}),
      [t("staff_record_clause"), t("staff_record_promise"), t("staff_record_declared_in"), t("staff_record_mechanism")],
      record.clauses.map((c) => [c.clause, c.promise, c.declared_in.join("; ") || "–", c.mechanisms.join("; ")]))),
  ];
}

function retention(r) {
  const period = r.period_days === null || r.period_days === undefined ? t("staff_record_no_period")
    : counted("staff_days", r.period_days);
  return `${period}, ${r.after} (${r.clause})`;
}

/** Run `load` from `button`, disabled meanwhile; errors go to the status region. */
function onClick(button, load) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    say(t("staff_loading"));
    try {
      await load();
      if (document.getElementById("status").textContent === t("staff_loading")) say("");
    } catch (error) {
      say(describe(error), "error");
    } finally {
      button.disabled = false;
    }
  });
}

start(async () => {
  if (!requireSession("staff", ["support", "admin", "accounting", "marketing"])) return;
  const canRetention = hasRole("support", "admin");
  document.getElementById("retention-part").hidden = !canRetention;
  onClick(document.getElementById("retention-load"), async () => {
    document.getElementById("retention").replaceChildren(
      ...retentionView(await api("privacy", "/staff/retention-report")).filter(Boolean));
  });
  onClick(document.getElementById("record-load"), async () => {
    document.getElementById("record").replaceChildren(...recordView(await api("privacy", "/staff/records-of-processing")));
  });
  onClick(document.getElementById("record-download"), async () => {
    const response = await api("privacy", "/staff/records-of-processing", {raw: true});
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", {href: url, download: `records-of-processing-${new Date().toISOString().slice(0, 10)}.json`});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);  // once the browser has taken the download
  });
  if (canRetention) document.getElementById("retention-load").click();
  document.getElementById("record-load").click();
});
