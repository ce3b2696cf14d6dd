import {api, keepSession, lang, next, onSubmit, start} from "../app.js";

start(() => {
  onSubmit(document.getElementById("login"), async ({email, password}) => {
    keepSession(await api("accounts", "/auth/login", {method: "POST", auth: false, body: {email, password}}));
    location.assign(next(`/${lang}/account`));
  });
});
