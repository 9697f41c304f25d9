// The single-page app: a hash router over the views (#/login, #/jobs, #/new, #/job/<id>).
import { get, post, setToken, token } from "./api.js";
import { loginView } from "./login.js";
import { jobsView } from "./jobs.js";
import { wizardView } from "./wizard.js";
import { jobView } from "./job.js";

const main = document.getElementById("main");
let stop = () => {};

async function route() {
  stop();
  stop = () => {};
  const hash = location.hash || "#/jobs";
  const nav = document.getElementById("nav");
  main.replaceChildren();
  if (!token() && hash !== "#/login") {
    location.hash = "#/login";
    return;
  }
  nav.hidden = !token();
  if (token()) {
    get("/me").then((me) => { document.getElementById("who").textContent = me.name; }).catch(() => {});
  }
  let m;
  if (hash === "#/login") stop = loginView(main) || stop;
  else if (hash === "#/new") stop = (await wizardView(main)) || stop;
  else if ((m = hash.match(/^#\/job\/([0-9a-f]+)$/))) stop = (await jobView(main, m[1])) || stop;
  else stop = jobsView(main, new URLSearchParams(hash.split("?")[1] || "")) || stop;
  const h1 = main.querySelector("h1");
  document.title = h1 ? `${h1.textContent} · scopeflow` : "scopeflow";
  main.focus({ preventScroll: true });
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await post("/auth/logout"); } catch { /* the token may be gone already */ }
  setToken(null);
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
