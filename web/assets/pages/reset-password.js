import {api, codeFromLink, forgetSession, onSubmit, say, start, t} from "../app.js";

start(() => {
  const form = document.getElementById("reset");
  codeFromLink(form);
  onSubmit(form, async ({token: code, password}) => {
    await api("accounts", "/auth/password-reset/confirm", {method: "POST", auth: false,
      body: {token: String(code).trim(), password}});
    forgetSession();  // every session of the account has ended
    form.hidden = true;
    history.replaceState(null, "", location.pathname);
    document.getElementById("onward").hidden = false;
    say(t("reset_done"), "ok");
  });
});
