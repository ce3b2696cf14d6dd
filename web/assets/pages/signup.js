import {api, lang, onSubmit, say, start, t} from "../app.js";

start(() => {
  const form = document.getElementById("signup");
  onSubmit(form, async ({name, email, phone, password}) => {
    if (!form.terms_version.checked) {
      say(t("terms_required"), "error");
      return;
    }
    // The language of this page is the one the shop writes to the customer in (changed in the account).
    await api("accounts", "/accounts", {method: "POST", auth: false, body: {
      name, email, phone, password, terms_version: form.terms_version.value, language: lang}});
    form.hidden = true;
    document.getElementById("sent").hidden = false;
    say(t("signup_sent", {email}), "ok");
  });
});
