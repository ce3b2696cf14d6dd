import {api, day, describe, el, lang, requireSession, say, start, t, when} from "../app.js";

// Each consent asked for separately (P21): offers by e-mail, offers by SMS, profiling.
const SCOPES = [
  {key: "email", scope: {purpose: "direct_marketing", channel: "email"}},
  {key: "sms", scope: {purpose: "direct_marketing", channel: "sms"}},
  {key: "profiling", scope: {purpose: "profiling"}},
];

const nameOf = ({purpose, channel}) => t(purpose === "profiling" ? "consent_profiling" : `consent_direct_marketing_${channel}`);
const matches = (entry, scope) => entry.purpose === scope.purpose && (entry.channel ?? null) === (scope.channel ?? null);

/** The wording now shown for a consent: its newest version. */
function wordingOf(wordings, scope) {
  return wordings.filter((w) => matches(w, scope)).sort((a, b) => b.published_at.localeCompare(a.published_at))[0];
}

function stateOf(state, key, scope) {
  const now = state.consents.find((c) => matches(c, scope));
  if (now?.granted) return t("consent_given_since", {since: day(now.since), version: now.wording_version || "–"});
  if (key === "email" && state.awaiting_confirmation) return t("consent_awaiting");
  if (now) return t("consent_withdrawn_since", {since: day(now.since)});
  return t("consent_not_given");
}

/** Do `what` (its answer is said), then show the consents as they now stand. */
async function act(what) {
  say("");
  for (const button of document.querySelectorAll("main button")) button.disabled = true;
  try {
    say(await what(), "ok");
  } catch (error) {
    say(describe(error), "error");
  }
  try {
    await render();
  } catch (error) {
    say(describe(error), "error");
  }
}

function consentSection(wordings, state, {key, scope}) {
  const wording = wordingOf(wordings, scope);
  const granted = state.consents.some((c) => matches(c, scope) && c.granted);
  const awaiting = key === "email" && !granted && state.awaiting_confirmation > 0;
  const grant = () => act(async () => {
    const {status} = await api("marketing", "/me/consents", {method: "POST",
      body: {consent: scope, wording_version: wording.version, language: lang}});
    return t(`consent_status_${status}`);
  });
  const withdraw = () => act(async () => {
    await api("marketing", "/me/consents/withdraw", {method: "POST", body: {consent: scope}});
    return t("consent_status_withdrawn");
  });
  return el("section", {class: "consent", "aria-labelledby": `consent-${key}`, "data-consent": key},
    el("h2", {id: `consent-${key}`}, nameOf(scope)),
    wording ? [el("blockquote", {}, wording[`text_${lang}`]),
      el("p", {class: "muted"}, t("consent_wording_shown", {version: wording.version}))] : null,
    el("p", {class: "consent-state"}, stateOf(state, key, scope)),
    el("p", {}, granted
      ? el("button", {type: "button", class: "secondary", onclick: withdraw}, t("consent_withdraw_button"))
      : wording ? el("button", {type: "button", onclick: grant}, t(awaiting ? "consent_resend_button" : "consent_give_button"))
        : null));
}

const SOURCES = ["web", "support", "unsubscribe_link", "double_opt_in", "objection", "account_closed", "privacy_request"];

async function render() {
  const [wordings, state, history] = await Promise.all([
    api("marketing", "/consent-wordings", {auth: false}), api("marketing", "/me/consents"),
    api("marketing", "/me/consents/history")]);
  document.getElementById("consents").replaceChildren(
    ...SCOPES.map((scope) => consentSection(wordings.items, state, scope)));
  document.getElementById("objections").replaceChildren(...(state.objections.length
    ? state.objections.map((purpose) => el("li", {}, t(`objected_${purpose}`)))
    : [el("li", {}, t("objections_none"))]));
  for (const button of document.querySelectorAll("[data-object]")) {
    button.disabled = state.objections.includes(button.dataset.object);
  }
  const table = document.getElementById("history");
  table.tBodies[0].replaceChildren(...history.items.map((entry) => el("tr", {},
    el("td", {}, when(entry.at)), el("th", {scope: "row"}, nameOf(entry)),
    el("td", {}, t(entry.granted ? "consent_granted" : "consent_withdrawn")),
    el("td", {}, SOURCES.includes(entry.source) ? t(`source_${entry.source}`) : entry.source),
    el("td", {}, entry.wording_version || "–"))));
  table.hidden = !history.items.length;
  document.getElementById("history-none").hidden = !!history.items.length;
}

start(async () => {
  if (!requireSession("customer")) return;
  for (const button of document.querySelectorAll("[data-object]")) {
    button.addEventListener("click", () => act(async () => {
      await api("marketing", "/me/objections", {method: "POST", body: {purpose: button.dataset.object}});
      return t("objection_done");
    }));
  }
  await render();
});
