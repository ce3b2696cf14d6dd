// Where the payment service provider sends a customer back after the card's authentication
// (the edge turns /payments/<id>/return into this page): how the payment stands now.
import {api, param, session, start, t} from "../app.js";

const SETTLED = ["succeeded", "failed", "canceled"];
const TRIES = 15;  // a payment still processing is asked again every 2 s, for half a minute

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

start(async () => {
  const id = param("id");
  const shown = document.getElementById("payment-state");
  if (!id || !/^[0-9a-f-]{36}$/i.test(id)) {
    shown.textContent = t("payment_unknown");
    return;
  }
  const signedIn = session()?.kind === "customer";
  for (let attempt = 0; attempt < TRIES; attempt++) {
    const payment = signedIn ? await api("payments", `/me/payments/${id}`)
      : await api("payments", `/guest-payments/${id}`, {auth: false});
    shown.textContent = t(`payment_${payment.status}`);
    if (SETTLED.includes(payment.status) || payment.status === "requires_action") return;
    await pause(2000);
  }
});
