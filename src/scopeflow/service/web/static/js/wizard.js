// New job: pick a template, fill the form generated from its JSON Schema, see (and edit) the
// resulting config.yaml, create the job from the form or from the edited text (422 problems
// shown next to the fields), optionally with the template's demo data instead of an upload.
import { get, message, post } from "./api.js";
import { SchemaForm } from "./schemaform.js";
import { el } from "./util.js";

export async function wizardView(main) {
  main.append(el("h1", { text: "New job" }));
  let templates;
  try { templates = await get("/templates"); } catch (e) { main.append(el("p.error", { text: message(e) })); return; }
  if (!templates.length) { main.append(el("p", { text: "No templates are registered: ask an administrator." })); return; }

  const pick = el("select#template", { name: "template" },
    templates.map((t) => el("option", { value: t.name, text: `${t.name} (${t.pipeline})` })));
  const desc = el("p.muted.small#template-description");
  const name = el("input#job-name", { name: "name", required: true, maxlength: "200" });
  const nameError = el("span.error", { id: "job-name-error" });
  name.setAttribute("aria-describedby", "job-name-error");
  const formBox = el("div");
  const yaml = el("textarea#config-yaml", { rows: 22, spellcheck: "false", "aria-describedby": "yaml-help" });
  const yamlMsg = el("p.small#yaml-help.muted", {
    text: "Generated from the form. You may edit it: the job is then made from the text (only user parameters are kept), or apply it to the form first.",
  });
  const demo = el("input#use-demo", { type: "checkbox", name: "demo", "aria-describedby": "demo-help" });
  const demoHelp = el("span.small.muted#demo-help");
  const demoBox = el("div.field#demo-option", {},
    demo, " ", el("label", { for: "use-demo", text: "Use demo data instead of uploading files" }), el("br"), demoHelp);
  const apply = el("button#apply-yaml", { type: "button", text: "Apply edited YAML to the form" });
  const create = el("button.primary#create-job", { type: "submit", text: "Create job" });
  const status = el("p.error", { role: "alert" });

  let form, template, timer, edited = false;
  let previews = 0; // previews asked for: only the newest one's answer is shown
  const preview = async () => {
    if (!form || edited) return;
    const asked = ++previews;
    const { params, errors } = form.values();
    try {
      const r = await post("/web/config-preview", { template: template.name, params });
      if (asked !== previews) return; // a newer preview (another template, newer values) was asked
      if (!edited) yaml.value = r.yaml;
      form.showErrors([...errors, ...r.detail]);
      if (!errors.length && !r.detail.length) status.textContent = "";
    } catch (e) { if (asked === previews) yamlMsg.textContent = message(e); }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(preview, 250); };
  const choose = () => {
    template = templates.find((t) => t.name === pick.value);
    desc.textContent = template.description || "";
    demoBox.hidden = !template.demo;
    demo.checked = false;
    demoHelp.textContent = template.demo ? (template.demo.description || `synthetic ${template.demo.dataset} data`) + " (known ground truth)." : "";
    form = new SchemaForm(template.schema, schedule);
    formBox.replaceChildren(form.node);
    edited = false;
    if (!name.value) name.value = `${template.name} ${new Date().toISOString().slice(0, 16).replace("T", " ")}`;
    preview();
  };
  pick.addEventListener("change", choose);
  yaml.addEventListener("input", () => { edited = true; });
  // the edited text's user parameters in the form; false (and the problems shown) when the
  // text is not usable as it is
  const applyText = async () => {
    let r;
    try { r = await post("/web/config-parse", { template: template.name, yaml: yaml.value }); } catch (e) {
      yamlMsg.textContent = message(e);
      yaml.setAttribute("aria-invalid", "true");
      return false;
    }
    yaml.removeAttribute("aria-invalid");
    form.setValues(r.params);
    edited = false;
    await preview();
    form.showErrors(r.detail);
    yamlMsg.textContent = r.detail.length ? "Applied; see the messages in the form." : "Applied to the form.";
    return !r.detail.length;
  };
  apply.addEventListener("click", applyText);

  const wizard = el("form.wizard#wizard", { novalidate: true },
    el("section.card", { "aria-labelledby": "params-title" },
      el("h2#params-title", { text: "1. Template and parameters" }),
      el("div.field", {}, el("label", { for: "template", text: "Template" }), el("br"), pick, desc),
      el("div.field", {}, el("label", { for: "job-name", text: "Job name *" }), el("br"), name, nameError),
      formBox, demoBox, status, create),
    el("section.card.preview", { "aria-labelledby": "yaml-title" },
      el("h2#yaml-title", { text: "2. config.yaml preview" }),
      el("label", { for: "config-yaml", class: "small", text: "Configuration (fixed + defaults + your values)" }),
      yaml, yamlMsg, apply));
  wizard.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = nameError.textContent = "";
    if (!name.value.trim()) { nameError.textContent = "A name is needed."; name.focus(); return; }
    if (edited && !(await applyText())) {
      status.textContent = "The edited config.yaml has problems: see its messages.";
      return;
    }
    const { params, errors } = form.values();
    if (errors.length) { form.showErrors(errors); return; }
    create.disabled = true;
    let job;
    try {
      job = await post("/jobs", { template: template.name, name: name.value.trim(), params });
      if (demo.checked && !demoBox.hidden) {
        status.setAttribute("role", "status");
        status.className = "muted";
        status.textContent = "Job created; writing the demo data…";
        await post(`/jobs/${job.id}/demo-data`, {});
      }
      location.hash = `#/job/${job.id}`;
    } catch (e) {
      status.setAttribute("role", "alert");
      status.className = "error";
      if (job) { status.textContent = `Job ${job.id} was created, but its demo data were not: ${message(e)}`; return; }
      const placed = e.status === 422 && Array.isArray(e.detail) ? form.showErrors(e.detail) : 0;
      status.textContent = placed ? "Please correct the parameters marked below." : message(e);
    } finally { create.disabled = false; }
  });
  main.append(wizard);
  choose();
}
