// One data-subject request: its subject and deadline, each participant's state and outcome;
// extend it with a reason, run a task again, or record what was done by hand.
import {api, describe, el, onSubmit, param, requireSession, say, start, t, when} from "../app.js";
import {UUID, deadline, facts, longEnough, named, outcomeOf, part, reasonGiven, subjectLine, table} from "../staff.js";

const id = param("id");
const place = document.getElementById("request");
const STUCK = ["failed", "waiting", "held"];  // what staff may run again or settle by hand

function detailsOf(details) {
  const shown = Object.entries(details).map(([key, value]) => `${named("detail", key)}: ${named("purpose", value)}`);
  return shown.length ? shown.join("; ") : "–";
}

function participant(name) {
  return name.startsWith("partner:") ? t("staff_participant_partner", {name: name.slice(8)}) : named("participant", name);
}

function retryButton(request, task) {
  if (!STUCK.includes(task.state)) return "–";
  return el("button", {type: "button", class: "secondary", "aria-label": t("staff_retry_label", {participant: participant(task.participant)}),
    onclick: async (event) => {
      event.target.disabled = true;
      say("");
      try {
        show(await api("privacy", `/staff/privacy-requests/${request.id}/tasks/${encodeURIComponent(task.participant)}/retry`,
          {method: "POST"}));
        say(t("staff_retried", {participant: participant(task.participant)}), "ok");
      } catch (error) {
        event.target.disabled = false;
        say(describe(error), "error");
      }
    }}, t("staff_retry"));
}

function show(r) {
  place.replaceChildren(
    part(t("staff_request_about"), 2, facts([
      [t("staff_request_kind"), named("kind", r.kind)],
      [t("staff_request_details"), detailsOf(r.details)],
      [t("staff_status"), named("request_state", r.state)],
      [t("staff_request_source"), named("source", r.source)],
      [t("staff_request_received"), when(r.received_at)],
      [t("staff_request_due"), el("span", {}, when(r.due_at), " — ", deadline(r))],
      [t("staff_request_extended"), r.extended_by_months
        ? t("staff_request_extended_by", {months: r.extended_by_months, reason: r.extension_reason}) : t("staff_no")],
      [t("staff_request_completed"), when(r.completed_at)],
      [t("staff_request_subject"), subjectLine(r.subject)],
      [t("staff_request_contact"), r.contact_email],
      [t("staff_request_identification"), r.identification],
    ])),
    part(t("staff_request_participants"), 2, table(t("staff_request_participants_caption", {count: r.tasks.length}),
      [t("staff_request_participant"), t("staff_status"), t("staff_request_attempts"), t("staff_request_outcome"),
        t("staff_request_last_error"), t("staff_request_sent"), t("staff_request_updated"), t("staff_actions")],
      r.tasks.map((task) => [participant(task.participant), named("task_state", task.state), String(task.attempts),
        el("div", {}, outcomeOf(task.outcome), task.remaining?.length
          ? el("p", {}, t("staff_request_remaining", {categories: task.remaining.join(", ")})) : null),
        task.last_error, when(task.sent_at), when(task.updated_at), retryButton(r, task)]))));
  document.getElementById("extend-part").hidden = r.state === "completed";
  const stuck = r.tasks.filter((task) => STUCK.includes(task.state));
  document.getElementById("manual-part").hidden = !stuck.length;
  document.getElementById("participant").replaceChildren(
    ...stuck.map((task) => el("option", {value: task.participant}, participant(task.participant))));
}

start(async () => {
  if (!requireSession("staff", ["support", "admin"])) return;
  if (!id || !UUID.test(id)) {
    say(t("staff_request_no_id"), "error");
    return;
  }
  onSubmit(document.getElementById("extend"), async ({months, reason}, form) => {
    if (!reasonGiven(form)) return;
    show(await api("privacy", `/staff/privacy-requests/${id}/extend`, {method: "POST",
      body: {months: Number(months), reason}}));
    form.reset();
    say(t("staff_request_extended_ok"), "ok");
  });
  onSubmit(document.getElementById("manual"), async ({participant: who, outcome, reason}, form) => {
    if (!longEnough(form, "outcome", 1) || !reasonGiven(form)) return;
    show(await api("privacy", `/staff/privacy-requests/${id}/tasks/${encodeURIComponent(who)}/outcome`,
      {method: "POST", body: {outcome, reason}}));
    form.reset();
    say(t("staff_request_manual_ok"), "ok");
  });
  show(await api("privacy", `/staff/privacy-requests/${id}`));
});
