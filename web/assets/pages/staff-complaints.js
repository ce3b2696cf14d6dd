// Complaints: look up an order with its complaints, open one for a customer, resolve one. Every
// step is a staff look at the order, recorded with its reason.
import {api, el, onSubmit, param, requireSession, say, start, t} from "../app.js";
import {complaintsTable, idGiven, longEnough, ordersTable, reasonGiven} from "../staff.js";

const found = document.getElementById("found");
const resolveForm = document.getElementById("resolve");

function resolveThis(complaint) {
  if (complaint.status !== "open") return "–";
  return el("button", {type: "button", class: "secondary", onclick: () => {
    resolveForm.elements.complaint.value = complaint.id;
    resolveForm.elements.resolution.focus();
  }}, t("staff_complaint_resolve_this"));
}

function show(record) {
  found.replaceChildren(ordersTable(record.orders, () => "–"), complaintsTable(record.complaints, resolveThis));
}

start(() => {
  if (!requireSession("staff", ["support", "admin"])) return;
  if (param("order")) {
    document.getElementById("find-order").value = param("order");
    document.getElementById("open-order").value = param("order");
  }
  if (param("complaint")) resolveForm.elements.complaint.value = param("complaint");

  onSubmit(document.getElementById("find"), async ({order_id, reason}, form) => {
    if (!idGiven(form, "order_id") || !reasonGiven(form)) return;
    show(await api("orders", "/staff/order-lookups", {method: "POST", body: {order_id: order_id.trim(), reason}}));
    say(t("staff_looked_recorded"), "ok");
  });
  onSubmit(document.getElementById("open"), async ({order_id, description, reason}, form) => {
    if (!idGiven(form, "order_id") || !longEnough(form, "description", 10) || !reasonGiven(form)) return;
    const complaint = await api("orders", "/staff/complaints", {method: "POST",
      body: {order_id: order_id.trim(), description, reason}});
    found.replaceChildren(complaintsTable([complaint], resolveThis));
    form.reset();
    say(t("staff_complaint_opened_ok"), "ok");
  });
  onSubmit(resolveForm, async ({complaint, resolution, reason}, form) => {
    if (!idGiven(form, "complaint") || !longEnough(form, "resolution", 10) || !reasonGiven(form)) return;
    const resolved = await api("orders", `/staff/complaints/${encodeURIComponent(complaint.trim())}/resolve`,
      {method: "POST", body: {resolution, reason}});
    found.replaceChildren(complaintsTable([resolved]));
    form.reset();
    say(t("staff_complaint_resolved_ok"), "ok");
  });
});
