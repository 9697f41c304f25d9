// New job: pick a template, fill the form generated from its JSON Schema, see (and edit) the
// resulting config.yaml, create the job (422 problems shown next to the fields).
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
    text: "Generated from the form. You may edit it, then apply it to the form: only user parameters are kept.",
  });
  const apply = el("button#apply-yaml", { type: "button", text: "Apply edited YAML to the form" });
  const create = el("button.primary#create-job", { type: "submit", text: "Create job" });
  const status = el("p.error", { role: "alert" });

  let form, template, timer, edited = false;
  const preview = async () => {
    if (!form || edited) return;
    const { params, errors } = form.values();
    try {
      const r = await post("/web/config-preview", { template: template.name, params });
      if (!edited) yaml.value = r.yaml;
      form.showErrors([...errors, ...r.detail]);
      if (!errors.length && !r.detail.length) status.textContent = "";
    } catch (e) { yamlMsg.textContent = message(e); }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(preview, 250); };
  const choose = () => {
    template = templates.find((t) => t.name === pick.value);
    desc.textContent = template.description || "";
    form = new SchemaForm(template.schema, schedule);
    formBox.replaceChildren(form.node);
    edited = false;
    if (!name.value) name.value = `${template.name} ${new Date().toISOString().slice(0, 16).replace("T", " ")}`;
    preview();
  };
  pick.addEventListener("change", choose);
  yaml.addEventListener("input", () => { edited = true; });
  apply.addEventListener("click", async () => {
    try {
      const r = await post("/web/config-parse", { template: template.name, yaml: yaml.value });
      form.setValues(r.params);
      edited = false;
      await preview();
      form.showErrors(r.detail);
      yamlMsg.textContent = r.detail.length ? "Applied; see the messages in the form." : "Applied to the form.";
    } catch (e) { yamlMsg.textContent = message(e); }
  });

  const wizard = el("form.wizard#wizard", { novalidate: true },
    el("section.card", { "aria-labelledby": "params-title" },
      el("h2#params-title", { text: "1. Template and parameters" }),
      el("div.field", {}, el("label", { for: "template", text: "Template" }), el("br"), pick, desc),
      el("div.field", {}, el("label", { for: "job-name", text: "Job name *" }), el("br"), name, nameError),
      formBox, status, create),
    el("section.card.preview", { "aria-labelledby": "yaml-title" },
      el("h2#yaml-title", { text: "2. config.yaml preview" }),
      el("label", { for: "config-yaml", class: "small", text: "Configuration (fixed + defaults + your values)" }),
      yaml, yamlMsg, apply));
  wizard.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = nameError.textContent = "";
    if (!name.value.trim()) { nameError.textContent = "A name is needed."; name.focus(); return; }
    const { params, errors } = form.values();
    if (errors.length) { form.showErrors(errors); return; }
    create.disabled = true;
    try {
      const job = await post("/jobs", { template: template.name, name: name.value.trim(), params });
      location.hash = `#/job/${job.id}`;
    } catch (e) {
      const placed = e.status === 422 && Array.isArray(e.detail) ? form.showErrors(e.detail) : 0;
      status.textContent = placed ? "Please correct the parameters marked below." : message(e);
    } finally { create.disabled = false; }
  });
  main.append(wizard);
  choose();
}
