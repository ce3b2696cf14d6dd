// Veikals pages: texts, the session, calls to the services' APIs, forms, the navigation.
// Plain ES modules, no build step. Every page's script imports this module and calls start().
//
// The only thing kept in the browser is the session, in sessionStorage under SESSION_KEY,
// declared in web/storage.py (the cookie notice is written from that declaration): no cookie,
// nothing before you sign in, nothing after you sign out or close the tab.

export const lang = document.documentElement.lang === "en" ? "en" : "lv";
export const SESSION_KEY = "veikals.session";
let TEXTS = {};

/** The text `key` in the page's language, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  let text = TEXTS[key] ?? key;
  for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

// --- the session -------------------------------------------------------------------------

function claimsOf(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return {};
  }
}

/** The signed-in session ({access, refresh, kind, roles, subject}), or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

export function keepSession(tokens) {
  const claims = claimsOf(tokens.access_token);
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({
    access: tokens.access_token, refresh: tokens.refresh_token, kind: claims.kind,
    roles: claims.roles || [], subject: claims.sub,
  }));
}

export function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

export function hasRole(...roles) {
  const s = session();
  return !!s && s.kind === "staff" && roles.some((role) => s.roles.includes(role));
}

/** Go to the sign-in page unless a session of `kind` (and one of `roles`, for staff) is open. */
export function requireSession(kind = "customer", roles = []) {
  const s = session();
  const here = location.pathname + location.search;
  if (!s || s.kind !== kind) {
    location.replace(`/${lang}/${kind === "staff" ? "staff-login" : "login"}?next=${encodeURIComponent(here)}`);
    return false;
  }
  if (roles.length && !hasRole(...roles)) {
    location.replace(`/${lang}/staff?denied=1`);
    return false;
  }
  return true;
}

// --- the APIs ------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function renewed() {
  const s = session();
  if (!s || !s.refresh) return false;
  const response = await fetch("/v1/accounts/auth/refresh", {
    method: "POST", headers: {"Content-Type": "application/json", Accept: "application/json"},
    body: JSON.stringify({refresh_token: s.refresh}),
  });
  if (!response.ok) {
    forgetSession();
    return false;
  }
  keepSession(await response.json());
  return true;
}

/**
 * Call `path` of `service` through this origin's edge (/v1/<service>/...). With `raw` the
 * Response itself comes back (a download); otherwise its JSON, its text, or null for 204.
 * A failure throws ApiError with the problem+json the service answered.
 */
export async function api(service, path, {method = "GET", body, auth = true, raw = false, headers = {}} = {}) {
  const send = () => {
    const all = {Accept: "application/json", "Accept-Language": lang, ...headers};
    const s = session();
    if (auth && s) all.Authorization = `Bearer ${s.access}`;
    if (body !== undefined) all["Content-Type"] = "application/json";
    return fetch(`/v1/${service}${path}`, {method, headers: all, body: body === undefined ? undefined : JSON.stringify(body)});
  };
  let response = await send();
  if (response.status === 401 && auth && session() && await renewed()) response = await send();
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch { /* not JSON: the status says it */ }
    throw new ApiError(response.status, problem);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** What went wrong, in words a person can act on. */
export function describe(error) {
  if (!(error instanceof ApiError)) return t("error_network");
  const problem = error.problem || {};
  const fields = (problem.errors || []).map((e) => `${e.field || e.loc || ""}: ${e.message || e.msg || ""}`);
  const known = TEXTS[`error_${error.status}`];
  return [known || problem.title || t("error_generic"), problem.detail, ...fields].filter(Boolean).join(" — ");
}

// --- the page ------------------------------------------------------------------------------

/** Build an element: el("p", {class: "x"}, "text", child). Text is always text, never HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Say something in the page's live region (read out by screen readers). */
export function say(message, kind = "info") {
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = kind;
  if (kind === "error") status.focus?.();
}

export function when(value) {
  if (!value) return "–";
  return new Date(value).toLocaleString(lang === "lv" ? "lv-LV" : "en-GB", {dateStyle: "medium", timeStyle: "short"});
}

export function day(value) {
  if (!value) return "–";
  return new Date(value).toLocaleDateString(lang === "lv" ? "lv-LV" : "en-GB", {dateStyle: "medium"});
}

/** Run `handler(data, form)` on submit: the button is disabled meanwhile, errors are said. */
export function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    say("");
    try {
      await handler(Object.fromEntries(new FormData(form).entries()), form);
    } catch (error) {
      say(describe(error), "error");
    } finally {
      if (button) button.disabled = false;
    }
  });
}

export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

/** A mailed link carries its code (?token=): put it in the form's `token` field, hide that
 * field and go on to the password. */
export function codeFromLink(form) {
  const token = param("token");
  if (!token) return;
  form.token.value = token;
  document.getElementById("code-field").hidden = true;
  form.password.focus();
}

/** Where to go after signing in: the page that sent us here, if it is one of ours. */
export function next(fallback) {
  const target = param("next");
  return target && target.startsWith("/") && !target.startsWith("//") ? target : fallback;
}

const CUSTOMER_LINKS = [["account", "account_title"], ["privacy", "privacy_title"], ["privacy-requests", "requests_title"],
  ["consents", "consents_title"]];
export const STAFF_LINKS = [
  ["staff-customers", "staff_customers_title", ["support", "admin"]],
  ["staff-requests", "staff_requests_title", ["support", "admin"]],
  ["staff-complaints", "staff_complaints_title", ["support", "admin"]],
  ["staff-refunds", "staff_refunds_title", ["accounting", "admin"]],
  ["staff-webhooks", "staff_webhooks_title", ["support", "admin"]],
  ["staff-reports", "staff_reports_title", ["support", "admin", "accounting", "marketing"]],
  ["staff-audit", "staff_audit_title", ["admin"]],
];

async function signOut() {
  try {
    await api("accounts", "/auth/logout", {method: "POST"});
  } catch { /* the session may have ended already */ }
  const staff = session()?.kind === "staff";
  forgetSession();
  location.assign(`/${lang}/${staff ? "staff-login" : ""}`);
}

function navigation() {
  const list = document.getElementById("nav");
  const s = session();
  const links = !s ? [["login", "login_title"], ["signup", "signup_title"]]
    : s.kind === "staff" ? STAFF_LINKS.filter(([, , roles]) => hasRole(...roles)) : CUSTOMER_LINKS;
  for (const [page, key] of links) {
    const current = document.body.dataset.page === page ? "page" : null;
    list.append(el("li", {}, el("a", {href: `/${lang}/${page}`, "aria-current": current}, t(key))));
  }
  if (s) list.append(el("li", {}, el("button", {type: "button", class: "link", onclick: signOut}, t("logout"))));
  const other = document.getElementById("language-switch");
  other.href = other.getAttribute("href") + location.search;  // the same page, in the other language
}

/** Load the texts and the navigation; then run the page's own `main()`. */
export async function start(main) {
  try {
    TEXTS = await (await fetch(`/assets/i18n/${lang}.json`)).json();
  } catch { /* the page's own texts are already in it */ }
  navigation();
  try {
    await main?.();
  } catch (error) {
    say(describe(error), "error");
  }
}
