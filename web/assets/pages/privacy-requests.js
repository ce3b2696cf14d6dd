import {api, lang, onSubmit, requireSession, say, start, t} from "../app.js";
import {requestOf, requestRow, wireKinds} from "../requests.js";

start(async () => {
  if (!requireSession("customer")) return;
  const form = document.getElementById("ask");
  wireKinds(form);
  onSubmit(form, async () => {
    const request = requestOf(form);
    if (!request) {
      say(t("rectification_empty"), "error");
      return;
    }
    // No language: our mail about it goes out in the account's.
    const view = await api("privacy", "/me/privacy-requests", {method: "POST", body: {request}});
    location.assign(`/${lang}/privacy-request?id=${view.id}${view.joined ? "&joined=1" : ""}`);
  });
  const {items} = await api("privacy", "/me/privacy-requests");
  const table = document.getElementById("requests");
  table.tBodies[0].append(...items.map((view) => requestRow(view, `/${lang}/privacy-request?id=${view.id}`)));
  table.hidden = !items.length;
  document.getElementById("none").hidden = !!items.length;
});
