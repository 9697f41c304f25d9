// The single-page app: a hash router over the views (#/login, #/jobs, #/new, #/job/<id>).
import { get, post, setToken, token } from "./api.js";
import { loginView } from "./login.js";
import { jobsView } from "./jobs.js";
import { wizardView } from "./wizard.js";
import { jobView } from "./job.js";
import { el } from "./util.js";

const main = document.getElementById("main");
let stop = () => {};
let generation = 0; // one more per route(): a view whose route is no longer the latest is stale

async function route() {
  stop();
  stop = () => {};
  const mine = ++generation;
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
  // each view draws into its own box: one left before its first answer came draws into a box
  // the next route() has already taken off the page
  const view = el("div.view");
  main.append(view);
  let m, stopView;
  if (hash === "#/login") stopView = loginView(view);
  else if (hash === "#/new") stopView = await wizardView(view);
  else if ((m = hash.match(/^#\/job\/([0-9a-f]+)$/))) stopView = await jobView(view, m[1]);
  else stopView = jobsView(view, new URLSearchParams(hash.split("?")[1] || ""));
  if (mine !== generation) { // navigated away meanwhile: stop the stale view's pollers
    if (stopView) stopView();
    return;
  }
  stop = stopView || stop;
  const h1 = view.querySelector("h1");
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
