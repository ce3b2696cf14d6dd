// Refunds to the original card (accounting, admin): all that is left of a payment, or an amount.
import {api, onSubmit, requireSession, say, start, t, when} from "../app.js";
import {cents, idGiven, money, named, reasonGiven, table} from "../staff.js";

const made = [];  // the refunds made on this page, newest first

start(() => {
  if (!requireSession("staff", ["accounting", "admin"])) return;
  onSubmit(document.getElementById("refund"), async ({by, id, amount, reason}, form) => {
    if (!idGiven(form, "id")) return;
    const amount_cents = cents(amount);
    if (Number.isNaN(amount_cents) || amount_cents === 0) {
      say(t("staff_refund_amount_wrong"), "error");
      form.elements.amount.focus();
      return;
    }
    if (!reasonGiven(form)) return;
    const body = {[by]: id.trim(), reason, ...(amount_cents === null ? {} : {amount_cents})};
    const refund = await api("payments", "/staff/refunds", {method: "POST", body});
    made.unshift(refund);
    document.getElementById("refunds").replaceChildren(table(t("staff_refunds_made"),
      [t("staff_refund"), t("staff_payment"), t("staff_order"), t("staff_amount"), t("staff_status"), t("staff_reason_short_label"),
        t("staff_created"), t("staff_refund_failure")],
      made.map((r) => [r.id, r.payment_id, r.order_id, money(r.amount_cents), named("refund_status", r.status), r.reason,
        when(r.created_at), r.failure_message])));
    form.elements.amount.value = "";
    say(t("staff_refund_made", {amount: money(refund.amount_cents), status: named("refund_status", refund.status)}), "ok");
  });
});
