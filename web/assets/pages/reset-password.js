import {api, forgetSession, onSubmit, param, say, start, t} from "../app.js";

start(() => {
  const form = document.getElementById("reset");
  const token = param("token");  // the mailed link carries the code
  if (token) {
    form.token.value = token;
    document.getElementById("code-field").hidden = true;
    form.password.focus();
  }
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
