import {api, onSubmit, say, start, t} from "../app.js";

start(() => {
  const form = document.getElementById("forgot");
  onSubmit(form, async ({email}) => {
    await api("accounts", "/auth/password-reset", {method: "POST", auth: false, body: {email}});
    form.hidden = true;
    say(t("forgot_sent", {email}), "ok");  // the same for any address: nothing tells whether it has an account
  });
});
