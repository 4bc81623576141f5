// DOM helpers. Everything from the API goes into the page as text nodes (textContent), never as HTML.

/** Make an element: h('a', {href: '#/runs', class: 'x'}, 'text', child). Children are nodes or text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A definition list from [term, value] pairs (values: text or nodes; empty ones are left out). */
export function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    dl.append(h('dt', null, term), h('dd', null, value));
  }
  return dl;
}

export function badge(status) {
  const word = String(status ?? 'unknown');
  return h('span', { class: `badge s-${word.replace(/[^a-z_]/gi, '')}` }, word);
}

export function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2) ?? 'null');
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : '';
}

export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** "in 4m 05s", "in 2h 10m", or "expired". */
export function countdown(iso, now = Date.now()) {
  const left = Math.floor((new Date(iso).getTime() - now) / 1000);
  if (!(left > 0)) return 'expired';
  const d = Math.floor(left / 86400), hours = Math.floor((left % 86400) / 3600);
  const m = Math.floor((left % 3600) / 60), s = left % 60;
  if (d) return `in ${d}d ${hours}h`;
  if (hours) return `in ${hours}h ${String(m).padStart(2, '0')}m`;
  return `in ${m}m ${String(s).padStart(2, '0')}s`;
}

/**
 * A minimal, safe markdown: blank lines make paragraphs, single newlines line breaks, **x** bold and `x`
 * code. Built from DOM nodes; any HTML in the text stays literal text.
 */
export function markdown(text) {
  const box = h('div', { class: 'markdown' });
  for (const para of String(text ?? '').split(/\n\s*\n/)) {
    if (!para.trim()) continue;
    const p = h('p');
    para.split('\n').forEach((line, index) => {
      if (index) p.append(h('br'));
      const parts = line.split(/(\*\*[^*]+\*\*|`[^`]+`)/);
      for (const part of parts) {
        if (/^\*\*[^*]+\*\*$/.test(part)) p.append(h('strong', null, part.slice(2, -2)));
        else if (/^`[^`]+`$/.test(part)) p.append(h('code', null, part.slice(1, -1)));
        else if (part) p.append(document.createTextNode(part));
      }
    });
    box.append(p);
  }
  return box;
}

let fieldCounter = 0;

/**
 * Form fields for a JSON Schema object's string/number/integer/boolean properties (required ones
 * required). Returns {fields, read}; read() gives the input object, leaving empty optional fields out.
 */
export function schemaFields(schema) {
  const properties = (schema && typeof schema === 'object' && schema.properties) || {};
  const required = new Set(Array.isArray(schema?.required) ? schema.required : []);
  const readers = [];
  const fields = h('div', { class: 'fields' });
  for (const [name, spec] of Object.entries(properties)) {
    const type = Array.isArray(spec?.type) ? spec.type.find((t) => t !== 'null') : spec?.type;
    const id = `f${++fieldCounter}`;
    const title = spec?.title || name;
    const label = h('label', { for: id }, title, required.has(name) ? ' (required)' : '');
    const help = spec?.description ? h('small', { class: 'help' }, spec.description) : null;
    let input;
    if (type === 'boolean') {
      input = h('input', { id, name, type: 'checkbox' });
      fields.append(h('div', { class: 'check' }, input, label, help));
      readers.push((out) => { out[name] = input.checked; });
      continue;
    }
    if (Array.isArray(spec?.enum)) {
      input = h('select', { id, name, required: required.has(name) },
        required.has(name) ? null : h('option', { value: '' }, '—'),
        spec.enum.map((option) => h('option', { value: String(option) }, String(option))));
    } else if (type === 'number' || type === 'integer') {
      input = h('input', {
        id, name, type: 'number', step: type === 'integer' ? '1' : 'any', required: required.has(name),
        min: spec.minimum, max: spec.maximum,
      });
    } else {
      input = h('input', {
        id, name, type: 'text', required: required.has(name), maxlength: spec?.maxLength, minlength: spec?.minLength,
      });
    }
    fields.append(h('div', { class: 'field' }, label, input, help));
    readers.push((out) => {
      const raw = input.value;
      if (raw === '' && !required.has(name)) return;
      if (type === 'number' || type === 'integer') out[name] = Number(raw);
      else if (Array.isArray(spec?.enum)) out[name] = spec.enum.find((option) => String(option) === raw) ?? raw;
      else out[name] = raw;
    });
  }
  return {
    fields,
    read() {
      const out = {};
      for (const reader of readers) reader(out);
      return out;
    },
  };
}
