// The sign-in page: a token becomes a session cookie; shops go to /shop, operators to /ops.
import { t, langSwitch } from "/static/i18n.js";
import { el, clear, api, session, errText } from "/static/common.js";

const app = document.getElementById("app");

function go(role) {
  location.href = role === "operator" ? "/ops" : "/shop";
}

function render(message) {
  const token = el("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const msg = el("p", { id: "signin-error", class: "error", role: "alert" }, message || "");
  const form = el(
    "form",
    { class: "card signin", id: "signin" },
    el("h1", {}, t("signin.title")),
    el("label", { for: "token" }, t("signin.token")),
    token,
    el("p", { class: "help" }, t("signin.help")),
    el("button", { type: "submit", class: "big" }, t("signin.submit")),
    msg,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/session", { token: token.value });
    if (r.ok) go(r.data.role);
    else msg.textContent = r.status === 403 ? t("signin.robot") : errText(r);
  });
  clear(app).append(el("header", { class: "bar" }, el("strong", {}, t("app.name")), langSwitch(() => render())), form);
  token.focus();
}

session().then((s) => (s ? go(s.role) : render()));
