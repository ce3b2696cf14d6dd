// Find a customer with a reason; then, with the same reason, their orders and consents. Each
// look is recorded by the service that answers it, and reaches the audit log.
import {ApiError, api, day, describe, el, hasRole, lang, onSubmit, requireSession, say, start, t, when} from "../app.js";
import {UUID, complaintsTable, facts, named, ordersTable, part, reasonGiven, table} from "../staff.js";

const result = document.getElementById("result");

function profile(record) {
  const p = record.profile;
  return part(t("staff_customer_profile"), 2, facts([
    [t("staff_customer_id"), el("code", {}, p.id)],
    [t("staff_name"), p.name],
    [t("email"), p.email],
    [t("staff_phone"), p.phone],
    [t("staff_customer_verified"), p.email_verified ? t("staff_yes") : t("staff_no")],
    [t("staff_customer_pending_email"), p.pending_email],
    [t("staff_customer_since"), day(p.created_at)],
    [t("staff_customer_closed"), record.closed_at ? when(record.closed_at) : t("staff_no")],
  ]), table(t("staff_customer_addresses"), [t("staff_address_label"), t("staff_address_recipient"), t("staff_phone"),
    t("staff_address")], record.addresses.map((a) => [a.label, a.recipient, a.phone,
    [a.line1, a.line2, `${a.postal_code} ${a.city}`, a.country].filter(Boolean).join(", ")])),
  hasRole("admin") ? el("p", {}, el("a", {href: `/${lang}/staff-audit?subject=${p.id}`}, t("staff_customer_audit"))) : null);
}

function orders(record) {
  return part(t("staff_customer_orders"), 2,
    ordersTable(record.orders, (o) => el("a", {href: `/${lang}/staff-complaints?order=${o.id}`}, t("staff_complaint_open_for"))),
    record.truncated ? el("p", {}, t("staff_customer_orders_truncated")) : null,
    complaintsTable(record.complaints, (c) => c.status !== "open" ? "–"
      : el("a", {href: `/${lang}/staff-complaints?complaint=${c.id}`}, t("staff_complaint_resolve_this"))));
}

function consents(view) {
  const c = view.consents;
  return part(t("staff_customer_consents"), 2,
    table(t("staff_consents_now"), [t("staff_purpose"), t("staff_channel"), t("staff_granted"), t("staff_since"),
      t("staff_source"), t("staff_wording")], c.consents.map((s) => [named("purpose", s.purpose),
      named("channel", s.channel), s.granted ? t("staff_yes") : t("staff_no"), when(s.since), named("source", s.source),
      s.wording_version])),
    el("p", {}, t("staff_consents_awaiting", {count: c.awaiting_confirmation})),
    el("p", {}, t("staff_consents_objections", {
      objections: c.objections.length ? c.objections.map((o) => named("purpose", o)).join(", ") : t("staff_nothing")})),
    table(t("staff_consents_ledger"), [t("staff_when"), t("staff_purpose"), t("staff_channel"), t("staff_granted"),
      t("staff_source"), t("staff_consents_by_staff"), t("staff_address")], view.ledger.map((e) => [when(e.at),
      named("purpose", e.purpose), named("channel", e.channel), e.granted ? t("staff_yes") : t("staff_no"),
      named("source", e.source), e.by_staff ? t("staff_yes") : t("staff_no"), e.address])));
}

/** A part that may find nothing (404): say so in its place instead of failing the page. */
async function orNothing(call, render, title, nothing) {
  try {
    return render(await call());
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return part(title, 2, el("p", {}, nothing));
    return part(title, 2, el("p", {class: "error"}, describe(error)));
  }
}

start(() => {
  if (!requireSession("staff", ["support", "admin"])) return;
  onSubmit(document.getElementById("lookup"), async ({who, reason}, form) => {
    who = who.trim();
    if (!who) {
      say(t("staff_customer_who_missing"), "error");
      form.elements.who.focus();
      return;
    }
    if (!reasonGiven(form)) return;
    result.replaceChildren();
    const key = UUID.test(who) ? {customer_id: who} : {email: who};
    const record = await api("accounts", "/staff/customer-lookups", {method: "POST", body: {...key, reason}});
    const customer = {customer_id: record.profile.id, reason};
    const [ordersPart, consentsPart] = await Promise.all([
      orNothing(() => api("orders", "/staff/order-lookups", {method: "POST", body: customer}), orders,
        t("staff_customer_orders"), t("staff_customer_no_orders")),
      orNothing(() => api("marketing", "/staff/consent-lookups", {method: "POST", body: customer}), consents,
        t("staff_customer_consents"), t("staff_customer_no_consents")),
    ]);
    result.replaceChildren(profile(record), ordersPart, consentsPart);
    say(t("staff_customer_found", {name: record.profile.name}), "ok");
  });
});
