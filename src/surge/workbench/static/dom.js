// Tiny DOM helpers: build elements, show JSON, time stamps.

/** Create an element: attrs may hold `class`, `on<event>` listeners and plain attributes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value') {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** JSON, indented for reading. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** Pretty JSON when `text` parses, else the text itself. */
export function prettyText(text) {
  if (text === '') return '(empty body)';
  try {
    return pretty(JSON.parse(text));
  } catch {
    return text;
  }
}

/** hh:mm:ss.mmm of now. */
export function clock() {
  const now = new Date();
  return now.toLocaleTimeString([], { hour12: false }) + '.' + String(now.getMilliseconds()).padStart(3, '0');
}

/** Re-run the highlight animation on `el`. */
export function flash(el) {
  el.classList.remove('flash');
  void el.offsetWidth; // restart the CSS animation
  el.classList.add('flash');
}
