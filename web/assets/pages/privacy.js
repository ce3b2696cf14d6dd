import {api, ApiError, day, el, lang, requireSession, start, t, when} from "../app.js";

const money = (cents, currency) =>
  new Intl.NumberFormat(lang === "lv" ? "lv-LV" : "en-GB", {style: "currency", currency}).format(cents / 100);

const facts = (...pairs) => el("dl", {class: "facts"},
  pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
    .flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));

/** Fill `id` with what `read` gives, laid out by `show`; a service that does not answer says so there alone. */
async function part(id, read, show) {
  const box = document.getElementById(id);
  try {
    box.replaceChildren(...[show(await read())].flat());
  } catch (error) {
    box.replaceChildren(el("p", {class: "error"}, t("data_unavailable")));
    throw error;
  }
}

const profile = (me) => facts(
  [t("name"), me.name], [t("email"), me.email],
  [t("email_pending"), me.pending_email], [t("phone"), me.phone || t("data_none")],
  [t("mail_language"), me.language ? t(`language_${me.language}`) : null],
  [t("data_terms"), me.terms_version ? t("data_terms_accepted", {version: me.terms_version, at: when(me.terms_accepted_at)}) : null],
  [t("data_account_created"), when(me.created_at)]);

const addresses = ({items}) => items.length
  ? el("ul", {}, items.map((a) => el("li", {}, [a.label, a.recipient, a.line1, a.line2, `${a.postal_code} ${a.city}`, a.country, a.phone]
    .filter(Boolean).join(", "))))
  : el("p", {}, t("data_none"));

function orders(page) {
  if (!page.items.length) return el("p", {}, t("data_orders_none"));
  return [el("table", {},
    el("thead", {}, el("tr", {}, [t("order_date"), t("order_number"), t("order_status"), t("order_items"), t("order_total")]
      .map((h) => el("th", {scope: "col"}, h)))),
    el("tbody", {}, page.items.map((o) => el("tr", {},
      el("td", {}, when(o.created_at)), el("th", {scope: "row"}, o.id.slice(0, 8)),
      el("td", {}, t(`order_${o.status}`)), el("td", {}, o.items), el("td", {}, money(o.gross_cents, o.currency)))))),
  page.next_cursor ? el("p", {class: "muted"}, t("data_orders_more")) : null].filter(Boolean);
}

const cards = ({items}) => items.length
  ? el("ul", {}, items.map((c) => el("li", {}, t("data_card", {
    brand: c.brand, last4: c.last4, expiry: `${String(c.exp_month).padStart(2, "0")}/${c.exp_year}`}))))
  : el("p", {}, t("data_cards_none"));

async function readMembership() {
  try {
    return await api("payments", "/me/membership");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

const membership = (m) => m
  ? facts([t("data_membership"), t(`membership_${m.status}`)], [t("data_membership_price"), money(m.price_cents, m.currency)],
    [t("data_membership_until"), day(m.period_end)])
  : el("p", {}, t("data_membership_none"));

const consentName = (c) => t(c.purpose === "profiling" ? "consent_profiling" : `consent_direct_marketing_${c.channel}`);

function consents(state) {
  const lines = state.consents.map((c) => el("li", {}, consentName(c), ": ",
    c.granted ? t("consent_given_since", {since: day(c.since), version: c.wording_version || "–"})
      : t("consent_withdrawn_since", {since: day(c.since)})));
  if (state.awaiting_confirmation) lines.push(el("li", {}, t("consent_awaiting")));
  for (const purpose of state.objections) lines.push(el("li", {}, t(`objected_${purpose}`)));
  return lines.length ? el("ul", {}, lines) : el("p", {}, t("data_consents_none"));
}

/** The privacy notice's sections, each one click away (what is kept, why and how long is long); your rights open. */
function notice(document) {
  return document.sections.filter((s) => s.key !== "who").map((s) => el("details", {open: s.key === "rights", "data-key": s.key},
    el("summary", {}, s.title),
    s.paragraphs.map((p) => el("p", {}, p)),
    s.items.length ? el("ul", {}, s.items.map((i) => el("li", {}, i))) : null,
    s.table ? el("table", {},
      el("thead", {}, el("tr", {}, s.table.header.map((h) => el("th", {scope: "col"}, h)))),
      el("tbody", {}, s.table.rows.map(([first, ...rest]) => el("tr", {}, el("th", {scope: "row"}, first),
        rest.map((cell) => el("td", {}, cell)))))) : null));
}

start(async () => {
  if (!requireSession("customer")) return;
  const results = await Promise.allSettled([
    part("profile", () => api("accounts", "/me"), profile),
    part("addresses", () => api("accounts", "/me/addresses"), addresses),
    part("orders", () => api("orders", "/me/orders"), orders),
    part("cards", () => api("payments", "/me/cards"), cards),
    part("membership", readMembership, membership),
    part("consents", () => api("marketing", "/me/consents"), consents),
    part("notice", () => api("privacy", `/privacy-notice/data?lang=${lang}`, {auth: false}), notice),
  ]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;  // said in the status region too
});
