import {api, ApiError, describe, param, requireSession, say, start, t} from "../app.js";
import {loadGlossary, requestView, save, ZIP} from "../requests.js";

const REFRESH_MS = 3000;  // while the request is open, its progress is read again this often

start(async () => {
  if (!requireSession("customer")) return;
  const id = param("id") || "";
  const token = param("token");  // the completion mail's link carries it: it opens the download
  if (param("joined")) say(t("request_joined"));
  await loadGlossary();
  let timer;

  async function show() {
    clearTimeout(timer);
    let view;
    try {
      view = await api("privacy", `/me/privacy-requests/${encodeURIComponent(id)}`);
    } catch (error) {
      document.getElementById("request").hidden = true;
      say(error instanceof ApiError && error.status === 404 ? t("request_not_found") : describe(error), "error");
      return;
    }
    document.getElementById("view").replaceChildren(...requestView(view));
    document.getElementById("request").hidden = false;
    const exported = view.kind === "export" && view.state === "completed";
    document.getElementById("download").hidden = !exported;
    document.getElementById("download-ready").hidden = !(exported && token);
    document.getElementById("save").hidden = !(exported && token);
    document.getElementById("download-by-mail").hidden = !(exported && !token);
    if (view.state !== "completed") timer = setTimeout(show, REFRESH_MS);
  }

  document.getElementById("refresh").addEventListener("click", show);
  document.getElementById("save").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      const response = await api("privacy", `/me/privacy-requests/${encodeURIComponent(id)}/export?token=${encodeURIComponent(token)}`,
        {raw: true, headers: ZIP});
      await save(response, `veikals-export-${id}.zip`);
      say(t("download_done"), "ok");
    } catch (error) {
      say(describe(error), "error");
    } finally {
      event.target.disabled = false;
    }
  });
  await show();
});
