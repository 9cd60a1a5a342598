// The one way the app builds DOM: text always goes in as text nodes, never as HTML, so a message
// like `<img src=x onerror=…>` shows as those characters.

/**
 * `el('p', {class: 'x', dataset: {id: '1'}, onclick: f}, 'text', child)`.
 * Props: `class`, `text`, `dataset`, `on<event>` listeners, booleans as present/absent attributes,
 * anything else as an attribute. Children: nodes or strings (appended as text), arrays flattened.
 */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c);
  return e;
}
