// Login: name and password; errors shown inline; the token goes to sessionStorage.
import { message, post, setToken } from "./api.js";
import { el } from "./util.js";

export function loginView(main) {
  const error = el("p.error#login-error", { role: "alert" });
  const name = el("input#login-name", { name: "name", autocomplete: "username", required: true });
  const pw = el("input#login-password", {
    name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const form = el("form.card.login", { "aria-labelledby": "login-title" },
    el("h1#login-title", { text: "Log in" }),
    el("div.field", {}, el("label", { for: "login-name", text: "User name" }), name),
    el("div.field", {}, el("label", { for: "login-password", text: "Password" }), pw),
    error,
    el("button.primary", { type: "submit", text: "Log in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const r = await post("/auth/login", { name: name.value, password: pw.value });
      setToken(r.token);
      location.hash = "#/jobs";
    } catch (e) {
      error.textContent = e.status === 401 ? "Wrong user name or password." : message(e);
      pw.select();
    }
  });
  main.append(form);
  name.focus();
}
