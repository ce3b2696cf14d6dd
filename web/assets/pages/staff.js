import {STAFF_LINKS, el, hasRole, lang, param, requireSession, say, session, start, t} from "../app.js";
import {named} from "../staff.js";

start(() => {
  if (!requireSession("staff")) return;
  if (param("denied")) say(t("staff_denied"), "error");
  const roles = session().roles.map((role) => named("role", role)).join(", ");
  document.getElementById("roles").textContent = t("staff_home_roles", {roles});
  const may = document.getElementById("may");
  for (const [page, key, roles] of STAFF_LINKS.filter(([, , needs]) => hasRole(...needs))) {
    may.append(el("li", {},
      el("h3", {}, el("a", {href: `/${lang}/${page}`}, t(key))),
      el("p", {}, t(key.replace(/_title$/, "_does"))),
      el("p", {class: "muted"}, t("staff_home_for", {roles: roles.map((role) => named("role", role)).join(", ")}))));
  }
});
