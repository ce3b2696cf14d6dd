// The data-subject request queue (by due date, overdue ones said so in words) and a request that
// came by e-mail or letter, entered by support.
import {api, el, lang, onSubmit, requireSession, say, start, t, when} from "../app.js";
import {UUID, deadline, longEnough, named, subjectLine, table} from "../staff.js";

const queue = document.getElementById("queue");
const filter = document.getElementById("filter");
const enter = document.getElementById("enter");

function link(request) {
  return el("a", {href: `/${lang}/staff-request?id=${request.id}`}, named("kind", request.kind));
}

async function load() {
  const query = new URLSearchParams();
  const {state, due_within_days: within} = Object.fromEntries(new FormData(filter).entries());
  if (state) query.set("state", state);
  if (within !== "" && within !== undefined) query.set("due_within_days", within);
  const {items} = await api("privacy", `/staff/privacy-requests?${query}`);
  const now = new Date();
  queue.replaceChildren(items.length ? table(t("staff_queue_caption", {count: items.length}),
    [t("staff_request_kind"), t("staff_request_received"), t("staff_status"), t("staff_request_subject"),
      t("staff_request_due"), t("staff_request_deadline"), t("staff_request_tasks")],
    items.map((r) => [link(r), when(r.received_at), named("request_state", r.state), subjectLine(r.subject),
      when(r.due_at), deadline(r, now),
      t("staff_request_tasks_done", {done: r.tasks.filter((task) => ["done", "manual"].includes(task.state)).length,
        all: r.tasks.length})]))
    : el("p", {}, t("staff_queue_empty")));
}

function showKindFields() {
  const kind = enter.elements.kind.value;
  for (const name of ["rectification", "objection", "withdrawal"]) {
    document.getElementById(`for-${name}`).hidden = kind !== name;
  }
}

const lines = (text) => text.split(/[\s,;]+/).map((line) => line.trim()).filter(Boolean);

function requested(data) {
  const request = {kind: data.kind};
  if (data.kind === "rectification") {
    if (data.name.trim()) request.name = data.name.trim();
    if (data.phone.trim()) request.phone = data.phone.trim();
  } else if (data.kind === "objection") {
    request.purpose = data.objection_purpose;
  } else if (data.kind === "withdrawal") {
    if (data.withdrawal_purpose) request.purpose = data.withdrawal_purpose;
    if (data.withdrawal_channel) request.channel = data.withdrawal_channel;
  }
  return request;
}

start(async () => {
  if (!requireSession("staff", ["support", "admin"])) return;
  enter.elements.kind.addEventListener("change", showKindFields);
  showKindFields();
  onSubmit(filter, load);
  onSubmit(enter, async (data, form) => {
    const customerId = data.customer_id.trim();
    const subject = {emails: lines(data.emails), phones: lines(data.phones)};
    if (customerId) subject.customer_id = customerId;
    if (customerId && !UUID.test(customerId)) {
      say(t("staff_id_wrong"), "error");
      form.elements.customer_id.focus();
      return;
    }
    if (!customerId && !subject.emails.length && !subject.phones.length) {
      say(t("staff_request_subject_missing"), "error");
      form.elements.customer_id.focus();
      return;
    }
    const request = requested(data);
    if (data.kind === "rectification" && !request.name && !request.phone) {
      say(t("staff_request_correction_missing"), "error");
      form.elements.name.focus();
      return;
    }
    if (!data.contact_email.trim()) {
      say(t("staff_request_contact_missing"), "error");
      form.elements.contact_email.focus();
      return;
    }
    if (!longEnough(form, "identification", 10)) return;
    const entered = await api("privacy", "/staff/privacy-requests", {method: "POST", body: {
      request, subject, contact_email: data.contact_email.trim(), identification: data.identification,
      language: data.language}});
    form.reset();
    showKindFields();
    await load();
    say(t(entered.joined ? "staff_request_joined" : "staff_request_entered", {due: when(entered.due_at)}), "ok");
    document.getElementById("status").append(" ", el("a", {href: `/${lang}/staff-request?id=${entered.id}`},
      t("staff_request_open_it")));
  });
  await load();
});
