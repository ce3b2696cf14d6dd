import {api, describe, lang, onSubmit, param, say, start, t} from "../app.js";
import {loadGlossary, requestOf, requestView, save, wireKinds, ZIP} from "../requests.js";

const REFRESH_MS = 3000;
const show = (id, shown = true) => { document.getElementById(id).hidden = !shown; };

/** Ask: the address gets a code; the code starts the request; its progress shows while the
 * page is open (the status token is kept in this page only, never in the browser's storage). */
function asking() {
  const form = document.getElementById("ask");
  wireKinds(form);
  let email = null;
  onSubmit(form, async (data) => {
    const request = requestOf(form);
    if (!request) {
      say(t("rectification_empty"), "error");
      return;
    }
    email = String(data.email || "").trim();
    await api("privacy", "/guest-privacy-requests", {method: "POST", auth: false, body: {email, request, language: lang}});
    show("asking", false);
    show("confirming");
    say(t("guest_code_sent", {email}), "ok");
    document.getElementById("code").focus();
  });
  onSubmit(document.getElementById("confirm"), async ({code}) => {
    const created = await api("privacy", "/guest-privacy-confirmations", {method: "POST", auth: false,
      body: {email, code: String(code).trim().toUpperCase()}});
    show("confirming", false);
    say(t(created.request.joined ? "request_joined" : "guest_request_started"), "ok");
    await following(created.request.id, created.status_token);
  });
}

async function following(id, statusToken) {
  let timer;
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const view = await api("privacy", `/guest-privacy-requests/${id}?token=${encodeURIComponent(statusToken)}`, {auth: false});
      document.getElementById("view").replaceChildren(...requestView(view));
      if (view.state !== "completed") timer = setTimeout(refresh, REFRESH_MS);
    } catch (error) {
      say(describe(error), "error");
    }
  };
  document.getElementById("refresh").addEventListener("click", refresh);
  show("progress");
  await refresh();
}

/** The completion mail's link (?id=&token=): a fresh code to the request's address opens the download. */
function downloading(id, token) {
  show("asking", false);
  show("download");
  const link = `/guest-privacy-requests/${encodeURIComponent(id)}`;
  document.getElementById("download-code").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      await api("privacy", `${link}/download-code?token=${encodeURIComponent(token)}`, {method: "POST", auth: false});
      say(t("guest_download_code_sent"), "ok");
      show("download-form");
      document.getElementById("download-code-input").focus();
    } catch (error) {
      say(describe(error), "error");
    } finally {
      event.target.disabled = false;
    }
  });
  onSubmit(document.getElementById("download-form"), async ({code}) => {
    const response = await api("privacy", `${link}/export?token=${encodeURIComponent(token)}&code=${
      encodeURIComponent(String(code).trim().toUpperCase())}`, {auth: false, raw: true, headers: ZIP});
    await save(response, `veikals-export-${id}.zip`);
    say(t("download_done"), "ok");
  });
}

start(async () => {
  await loadGlossary();
  const id = param("id");
  const token = param("token");
  if (id && token) downloading(id, token);
  else asking();
});
