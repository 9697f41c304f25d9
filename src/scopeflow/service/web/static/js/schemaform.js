// A form generated from a template's JSON Schema (objects nest as fieldsets; enums are selects;
// descriptions are help texts; `anyOf [X, null]` is an optional X). Values equal to the default
// are left out of the parameters, so a job records only what the user changed.
import { el } from "./util.js";

const fid = (path) => `f-${path.join("__")}`;

/** The non-null branch of `anyOf [X, null]`, and whether null is allowed. */
function unwrap(schema) {
  const branches = schema.anyOf || schema.oneOf;
  if (!branches) return [schema, false];
  const real = branches.filter((b) => b.type !== "null");
  const nullable = real.length < branches.length;
  if (real.length === 1) return [{ ...real[0], ...schema, anyOf: undefined, oneOf: undefined, type: real[0].type }, nullable];
  return [{ ...schema, type: "json" }, nullable];
}

function kind(s) {
  if (s.enum) return "enum";
  if (s.const !== undefined) return "const";
  if (s.type === "boolean") return "bool";
  if (s.type === "integer" || s.type === "number") return "number";
  if (s.type === "string") return "string";
  if (s.type === "array" && s.items && ["string", "number", "integer"].includes(s.items.type)) return "list";
  return "json";
}

function constraints(s) {
  const c = [];
  if (s.minimum !== undefined) c.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) c.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) c.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) c.push(`< ${s.exclusiveMaximum}`);
  return c.join(", ");
}

class Field {
  constructor(path, schema, required) {
    [this.schema, this.nullable] = unwrap(schema);
    this.path = path;
    this.kind = kind(this.schema);
    this.default = schema.default;
    this.required = required;
    const s = this.schema, id = fid(path);
    if (this.kind === "enum") {
      this.input = el("select", { id, name: path.join(".") },
        this.nullable && el("option", { value: "", text: "(none)" }),
        s.enum.map((v) => el("option", { value: JSON.stringify(v), text: String(v) })));
    } else if (this.kind === "bool") {
      this.input = el("input", { id, type: "checkbox", name: path.join(".") });
    } else if (this.kind === "number") {
      this.input = el("input", { id, type: "number", name: path.join("."), step: s.type === "integer" ? "1" : "any",
        min: s.minimum, max: s.maximum, placeholder: this.nullable ? "(none)" : undefined });
    } else if (this.kind === "json") {
      this.input = el("textarea", { id, rows: 2, name: path.join("."), placeholder: "JSON" });
    } else {
      this.input = el("input", { id, name: path.join("."), type: "text",
        placeholder: this.kind === "list" ? "comma-separated" : this.nullable ? "(none)" : undefined });
    }
    this.error = el("span.error", { id: `${id}-error`, "aria-live": "polite" });
    const helpText = [schema.description, constraints(s), this.kind === "list" ? "a list: values separated by commas" : ""]
      .filter(Boolean).join(" · ");
    const help = el("span.help", { id: `${id}-help`, text: helpText });
    this.input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
    if (required) this.input.required = true;
    this.node = el("div.field", { "data-path": path.join(".") },
      el("label", { for: id, text: (schema.title || path.at(-1)) + (required ? " *" : "") }),
      this.kind === "bool" ? " " : el("br"), this.input, help, this.error);
    if (this.default !== undefined) this.set(this.default);
  }

  set(v) {
    const i = this.input;
    if (this.kind === "bool") i.checked = !!v;
    else if (v === null || v === undefined) i.value = "";
    else if (this.kind === "enum") i.value = JSON.stringify(v);
    else if (this.kind === "list") i.value = Array.isArray(v) ? v.join(", ") : String(v);
    else if (this.kind === "json") i.value = JSON.stringify(v);
    else i.value = String(v);
  }

  /** The value, or throws Error with a message for the field. */
  get() {
    const i = this.input, raw = i.value.trim();
    if (this.kind === "bool") return i.checked;
    if (raw === "" && this.kind !== "string") {
      if (this.nullable) return null;
      if (this.kind === "list") return [];
      return undefined;
    }
    if (this.kind === "enum") return JSON.parse(raw);
    if (this.kind === "number") {
      const n = Number(raw);
      if (!isFinite(n)) throw new Error("a number is needed");
      return n;
    }
    if (this.kind === "list") {
      const items = raw.split(",").map((x) => x.trim()).filter((x) => x !== "");
      const numeric = ["number", "integer"].includes(this.schema.items.type);
      return numeric ? items.map(Number) : items;
    }
    if (this.kind === "json") {
      try { return JSON.parse(raw); } catch { throw new Error("not valid JSON"); }
    }
    return raw === "" && this.nullable ? null : raw;
  }
}

export class SchemaForm {
  constructor(schema, onChange) {
    this.fields = [];
    this.node = el("div.schema-form");
    this.general = el("p.error", { role: "alert" });
    this.node.append(this.general, ...this._object(schema, [], true));
    this.node.addEventListener("input", () => onChange && onChange());
    this.node.addEventListener("change", () => onChange && onChange());
  }

  _object(schema, path, top) {
    const req = new Set(schema.required || []);
    const out = [];
    for (const [name, sub] of Object.entries(schema.properties || {})) {
      const p = [...path, name];
      if (sub.type === "object" && sub.properties) {
        out.push(el("fieldset", { "data-path": p.join(".") },
          el("legend", { text: sub.title || name }),
          sub.description && el("p.help.muted.small", { text: sub.description }),
          ...this._object(sub, p, false)));
      } else {
        const f = new Field(p, sub, req.has(name));
        this.fields.push(f);
        out.push(f.node);
      }
    }
    if (top && !out.length) out.push(el("p.muted", { text: "This template has no parameters to set." }));
    return out;
  }

  /** Nested parameters: only values that differ from their defaults. */
  values() {
    const params = {};
    const errors = [];
    for (const f of this.fields) {
      let v;
      try { v = f.get(); } catch (e) { errors.push({ loc: f.path, msg: e.message }); continue; }
      if (v === undefined) continue;
      if (f.default !== undefined && JSON.stringify(v) === JSON.stringify(f.default)) continue;
      let node = params;
      for (const part of f.path.slice(0, -1)) node = node[part] ??= {};
      node[f.path.at(-1)] = v;
    }
    return { params, errors };
  }

  /** Fill the form from nested parameters (fields not given go back to their defaults). */
  setValues(params) {
    for (const f of this.fields) {
      let v = params;
      for (const part of f.path) v = v && typeof v === "object" ? v[part] : undefined;
      f.set(v === undefined ? f.default : v);
    }
  }

  /** Show the API's `detail: [{loc, msg}]` next to the fields; returns how many were placed. */
  showErrors(detail) {
    for (const f of this.fields) { f.error.textContent = ""; f.node.classList.remove("invalid"); f.input.removeAttribute("aria-invalid"); }
    this.general.textContent = "";
    const rest = [];
    let placed = 0;
    for (const p of Array.isArray(detail) ? detail : []) {
      const loc = (p.loc || []).filter((x) => x !== "body" && x !== "params").join(".");
      const f = this.fields.find((x) => x.path.join(".") === loc)
        || this.fields.find((x) => loc.startsWith(`${x.path.join(".")}.`) || x.path.join(".").startsWith(`${loc}.`));
      if (f) {
        f.error.textContent = (f.error.textContent ? `${f.error.textContent}; ` : "") + p.msg;
        f.node.classList.add("invalid");
        f.input.setAttribute("aria-invalid", "true");
        placed++;
      } else rest.push(`${loc || "parameters"}: ${p.msg}`);
    }
    this.general.textContent = rest.join("; ");
    return placed;
  }
}
