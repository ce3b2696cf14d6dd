// Partner deliveries of one service: its partners, the delivery log, one delivery with every
// attempt (sent again by an admin), and the callbacks a partner sent. Each read of the log or
// the callbacks is recorded in the audit log.
import {api, describe, el, hasRole, onSubmit, requireSession, say, start, t, when} from "../app.js";
import {facts, named, table} from "../staff.js";

const pick = document.getElementById("pick");
const callbacksForm = document.getElementById("callbacks-form");
const service = () => pick.elements.service.value;

async function partners() {
  const {partners: list} = await api(service(), "/staff/partners");
  document.getElementById("partners").replaceChildren(list.length
    ? table(t("staff_webhooks_partners_caption", {count: list.length}),
      [t("staff_webhooks_partner"), t("staff_webhooks_kind"), t("staff_webhooks_endpoint"), t("staff_webhooks_data"),
        t("staff_webhooks_disabled"), t("staff_actions")],
      list.map((p) => [p.name, named("partner_kind", p.kind), p.endpoint, p.data_categories.join(", "),
        p.disabled_at ? `${when(p.disabled_at)}: ${p.disabled_reason || ""}` : t("staff_no"), enableButton(p)]))
    : el("p", {}, t("staff_webhooks_no_partners")));
  const chosen = pick.elements.partner.value;
  const options = (first) => [...(first ? [el("option", {value: ""}, first)] : []),
    ...list.map((p) => el("option", {value: p.name}, p.name))];
  pick.elements.partner.replaceChildren(...options(t("staff_webhooks_every_partner")));
  pick.elements.partner.value = list.some((p) => p.name === chosen) ? chosen : "";
  callbacksForm.elements.partner.replaceChildren(...options(null));
  callbacksForm.querySelector("[type=submit]").disabled = !list.length;
}

/** An endpoint disabled after it answered 410 Gone, enabled again by an admin. */
function enableButton(partner) {
  if (!partner.disabled_at || !hasRole("admin")) return "–";
  return el("button", {type: "button", class: "secondary", "aria-label": t("staff_webhooks_enable_label", {name: partner.name}),
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(service(), `/staff/partners/${encodeURIComponent(partner.name)}/enable`, {method: "POST"});
        await partners();
        say(t("staff_webhooks_enabled", {name: partner.name}), "ok");
      } catch (error) {
        event.target.disabled = false;
        say(describe(error), "error");
      }
    }}, t("staff_webhooks_enable"));
}

async function deliveries() {
  const {partner, status} = Object.fromEntries(new FormData(pick).entries());
  const query = new URLSearchParams({limit: "100"});
  if (partner) query.set("partner", partner);
  if (status) query.set("status", status);
  const {deliveries: list} = await api(service(), `/staff/webhooks/deliveries?${query}`);
  document.getElementById("deliveries").replaceChildren(list.length
    ? table(t("staff_webhooks_deliveries_caption", {count: list.length}),
      [t("staff_webhooks_delivery_id"), t("staff_webhooks_partner"), t("staff_webhooks_event"), t("staff_status"),
        t("staff_webhooks_attempts"), t("staff_created"), t("staff_webhooks_next"), t("staff_webhooks_last"), t("staff_actions")],
      list.map((d) => [el("code", {}, d.id), d.partner, d.event_type, named("delivery_status", d.status), String(d.attempts),
        when(d.created_at), when(d.next_attempt_at), lastAnswer(d),
        el("button", {type: "button", class: "secondary", "aria-label": t("staff_webhooks_open_label", {id: d.id}),
          onclick: () => open(d.id).catch((error) => say(describe(error), "error"))}, t("staff_webhooks_open"))]))
    : el("p", {}, t("staff_webhooks_no_deliveries")));
}

function lastAnswer(d) {
  return [d.last_status && `HTTP ${d.last_status}`, d.last_error].filter(Boolean).join(" — ") || "–";
}

async function open(id) {
  const d = await api(service(), `/staff/webhooks/deliveries/${encodeURIComponent(id)}`);
  const redeliver = hasRole("admin") && d.status !== "pending"
    ? el("p", {}, el("button", {type: "button", onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(service(), `/staff/webhooks/deliveries/${encodeURIComponent(id)}/redeliver`, {method: "POST"});
        say(t("staff_webhooks_redelivered"), "ok");
        await open(id);
      } catch (error) {
        event.target.disabled = false;
        say(describe(error), "error");
      }
    }}, t("staff_webhooks_redeliver")))
    : null;
  document.getElementById("delivery").replaceChildren(
    facts([[t("staff_webhooks_delivery_id"), el("code", {}, d.id)], [t("staff_webhooks_partner"), d.partner],
      [t("staff_webhooks_event"), d.event_type], [t("staff_status"), named("delivery_status", d.status)],
      [t("staff_created"), when(d.created_at)], [t("staff_webhooks_delivered"), when(d.delivered_at)],
      [t("staff_webhooks_next"), when(d.next_attempt_at)]]),
    table(t("staff_webhooks_attempts_caption", {count: d.attempts_log.length}),
      [t("staff_webhooks_attempt"), t("staff_webhooks_started"), t("staff_webhooks_answer"), t("staff_webhooks_latency"),
        t("staff_webhooks_error")],
      d.attempts_log.map((a) => [String(a.attempt), when(a.started_at), a.status_code ? `HTTP ${a.status_code}` : "–",
        `${a.latency_ms} ms`, a.error])),
    ...(redeliver ? [redeliver] : []));
  document.getElementById("delivery-part").hidden = false;
  document.getElementById("delivery-heading").focus();
}

async function callbacks({partner}) {
  const {callbacks: list} = await api(service(), `/staff/partners/${encodeURIComponent(partner)}/callbacks?limit=100`);
  document.getElementById("callbacks").replaceChildren(list.length
    ? table(t("staff_webhooks_callbacks_caption", {count: list.length, partner}),
      [t("staff_webhooks_delivery_id"), t("staff_webhooks_event"), t("staff_webhooks_received"), t("staff_webhooks_data")],
      list.map((c) => [el("code", {}, c.webhook_id), c.type, when(c.received_at), el("pre", {}, JSON.stringify(c.data, null, 1))]))
    : el("p", {}, t("staff_webhooks_no_callbacks")));
}

start(async () => {
  if (!requireSession("staff", ["support", "admin"])) return;
  pick.elements.service.addEventListener("change", () => {
    pick.elements.partner.value = "";
    document.getElementById("delivery-part").hidden = true;
    document.getElementById("callbacks").replaceChildren();
    partners().then(deliveries).catch((error) => say(describe(error), "error"));
  });
  onSubmit(pick, deliveries);
  onSubmit(callbacksForm, callbacks);
  await partners();
  await deliveries();
});
