import {api, codeFromLink, lang, onSubmit, say, session, start, t} from "../app.js";

start(() => {
  const form = document.getElementById("verify");
  codeFromLink(form);
  onSubmit(form, async ({token: code, password}) => {
    await api("accounts", "/accounts/verify-email", {method: "POST", auth: false,
      body: {token: String(code).trim(), password}});
    form.hidden = true;
    history.replaceState(null, "", location.pathname);  // the code is spent; the address need not keep it
    const signedIn = session()?.kind === "customer";
    const onward = document.getElementById("onward-link");
    if (signedIn) {
      onward.href = `/${lang}/account`;
      onward.textContent = t("account_title");
    }
    document.getElementById("onward").hidden = false;
    say(t(signedIn ? "verify_email_changed" : "verify_email_done"), "ok");
  });
});
