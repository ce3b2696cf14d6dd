import {api, describe, el, lang, onSubmit, requireSession, say, start, t} from "../app.js";

// Where the shop delivers: the EU, the EEA, Switzerland and the United Kingdom.
const COUNTRIES = ["AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU", "IE",
  "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK"];
const FIELDS = ["label", "recipient", "line1", "line2", "city", "postal_code", "country", "phone"];
const countryName = (() => {
  const names = new Intl.DisplayNames([lang], {type: "region"});
  return (code) => names.of(code) || code;
})();

let editing = null;  // the id of the address in the form, or null for a new one
const form = () => document.getElementById("address");

function edit(address) {
  editing = address?.id ?? null;
  const f = form();
  f.reset();
  if (address) for (const field of FIELDS) f[field].value = address[field] ?? "";
  else f.country.value = "LV";
  document.getElementById("form-heading").textContent = t(address ? "address_edit" : "address_add");
  document.getElementById("cancel").hidden = !address;
  if (address) f.recipient.focus();
}

function card(address) {
  const lines = [address.recipient, address.line1, address.line2, `${address.postal_code} ${address.city}`,
    countryName(address.country), address.phone].filter(Boolean);
  const name = address.label || address.line1;
  return el("li", {},
    address.label ? el("strong", {}, address.label) : null,
    el("address", {}, lines.flatMap((line, i) => (i ? [el("br"), line] : [line]))),
    el("p", {class: "actions"},
      el("button", {type: "button", class: "secondary", "aria-label": t("address_edit_named", {name}),
        onclick: () => edit(address)}, t("edit")),
      el("button", {type: "button", class: "secondary", "aria-label": t("address_remove_named", {name}),
        onclick: () => remove(address)}, t("remove"))));
}

async function remove(address) {
  try {
    await api("accounts", `/me/addresses/${address.id}`, {method: "DELETE"});
    if (editing === address.id) edit(null);
    say(t("address_removed"), "ok");
  } catch (error) {
    say(describe(error), "error");
  }
  await list();
}

async function list() {
  const {items} = await api("accounts", "/me/addresses");
  document.getElementById("addresses").replaceChildren(...items.map(card));
  document.getElementById("none").hidden = !!items.length;
}

start(async () => {
  if (!requireSession("customer")) return;
  const f = form();
  f.country.append(...COUNTRIES.map((code) => ({code, name: countryName(code)}))
    .sort((a, b) => a.name.localeCompare(b.name, lang))
    .map(({code, name}) => el("option", {value: code}, name)));
  edit(null);
  document.getElementById("cancel").addEventListener("click", () => edit(null));
  onSubmit(f, async (data) => {
    const body = {};
    for (const field of FIELDS) {
      const value = String(data[field] ?? "").trim();
      if (value) body[field] = value;
    }
    await api("accounts", editing ? `/me/addresses/${editing}` : "/me/addresses",
      {method: editing ? "PUT" : "POST", body});
    say(t(editing ? "address_saved" : "address_added"), "ok");
    edit(null);
    await list();
  });
  await list();
});
