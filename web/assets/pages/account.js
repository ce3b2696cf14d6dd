import {api, forgetSession, onSubmit, requireSession, say, start, t} from "../app.js";

start(async () => {
  if (!requireSession("customer")) return;
  let me = await api("accounts", "/me");
  const profile = document.getElementById("profile");
  const fill = () => {
    profile.name.value = me.name;
    profile.phone.value = me.phone || "";
    profile.language.value = me.language || "lv";
    document.getElementById("current-email").textContent = me.email;
    const pending = document.getElementById("pending-email");
    pending.textContent = me.pending_email ? t("email_pending_text", {email: me.pending_email}) : "";
    pending.hidden = !me.pending_email;
  };
  fill();

  onSubmit(profile, async ({name, phone, language}) => {
    const change = {};
    if (name.trim() !== me.name) change.name = name.trim();
    if (phone.trim() && phone.trim() !== me.phone) change.phone = phone.trim();
    if (!phone.trim() && me.phone) {
      say(t("phone_not_removable"), "error");
      return;
    }
    if (language !== (me.language || "lv")) change.language = language;
    if (!Object.keys(change).length) {
      say(t("nothing_changed"));
      return;
    }
    me = await api("accounts", "/me", {method: "PATCH", body: change});
    fill();
    say(t("profile_saved"), "ok");
  });

  const email = document.getElementById("email-change");
  onSubmit(email, async (data) => {
    await api("accounts", "/me/email", {method: "POST", body: {email: data.email.trim(), password: data.password}});
    email.reset();
    me = await api("accounts", "/me");
    fill();
    say(t("email_change_sent", {email: data.email.trim()}), "ok");
  });

  const close = document.getElementById("close");
  onSubmit(close, async ({password}) => {
    if (!close.sure.checked) {
      say(t("close_confirm_required"), "error");
      return;
    }
    await api("accounts", "/me/close", {method: "POST", body: {password}});
    forgetSession();  // every session of the account has ended
    for (const section of document.querySelectorAll("main section")) section.hidden = true;
    say(t("close_done"), "ok");
  });
});
