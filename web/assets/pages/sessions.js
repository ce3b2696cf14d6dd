import {api, describe, el, requireSession, say, start, t, when} from "../app.js";

/** "Firefox, Windows" from a user agent; the whole string stays beside it. */
function device(agent) {
  if (!agent) return t("session_unknown_device");
  const browser = [["Edg/", "Edge"], ["OPR/", "Opera"], ["Firefox/", "Firefox"], ["Chromium/", "Chromium"],
    ["Chrome/", "Chrome"], ["Safari/", "Safari"]].find(([mark]) => agent.includes(mark))?.[1];
  const system = [["Android", "Android"], ["iPhone", "iOS"], ["iPad", "iPadOS"], ["Windows", "Windows"],
    ["Mac OS", "macOS"], ["CrOS", "ChromeOS"], ["Linux", "Linux"]].find(([mark]) => agent.includes(mark))?.[1];
  return [browser, system].filter(Boolean).join(", ") || t("session_unknown_device");
}

function stateOf(s) {
  if (s.current) return t("session_current");
  if (s.ended_at) return t("session_ended", {at: when(s.ended_at)});
  if (new Date(s.expires_at) < new Date()) return t("session_expired", {at: when(s.expires_at)});
  return t("session_open_until", {at: when(s.expires_at)});
}

async function list() {
  const {items} = await api("accounts", "/me/sessions");
  document.querySelector("#sessions tbody").replaceChildren(...items.map((s) => {
    const open = !s.ended_at && new Date(s.expires_at) > new Date();
    const name = device(s.user_agent);
    return el("tr", {},
      el("th", {scope: "row"}, name, s.user_agent ? el("small", {class: "hint"}, s.user_agent) : null),
      el("td", {}, s.ip || "–"), el("td", {}, when(s.created_at)), el("td", {}, when(s.last_used_at)),
      el("td", {}, stateOf(s)),
      el("td", {}, open && !s.current ? el("button", {type: "button", class: "secondary",
        "aria-label": t("session_end_named", {device: name, at: when(s.created_at)}),
        onclick: () => end(s)}, t("session_end")) : null));
  }));
}

async function end(s) {
  try {
    await api("accounts", `/me/sessions/${s.id}`, {method: "DELETE"});
    say(t("session_ended_done"), "ok");
  } catch (error) {
    say(describe(error), "error");
  }
  await list();
}

start(async () => {
  if (!requireSession("customer")) return;
  await list();
});
