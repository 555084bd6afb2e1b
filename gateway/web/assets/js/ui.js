// What the storefront and the admin console share: the html`` tag (Preact + htm), a small
// History-API router, formatting, and the components for errors, loading and empty states, and
// labelled form fields.

import { h, render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';

export { render };
export { useCallback, useEffect, useRef, useState };
export const html = htm.bind(h);

// -- router ---------------------------------------------------------------------------------------

const routeListeners = new Set();

export function navigate(to, { replace = false } = {}) {
  if (to === location.pathname + location.search) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', to);
  for (const fn of routeListeners) fn();
  window.scrollTo(0, 0);
}

/** The current location ({path, query}); re-renders the caller on every navigation. */
export function useLocation() {
  const read = () => ({ path: location.pathname.replace(/\/+$/, '') || '/', query: new URLSearchParams(location.search) });
  const [where, setWhere] = useState(read);
  useEffect(() => {
    const update = () => setWhere(read());
    routeListeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      routeListeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return where;
}

/** Same-origin links are handled by the router instead of reloading the page. */
export function interceptLinks(root) {
  root.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a[href]');
    if (!link || link.target || link.hasAttribute('download') || event.defaultPrevented) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    if (url.pathname.startsWith('/admin') !== location.pathname.startsWith('/admin')) return; // the other app
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
}

/** Matches "/orders/:id" against a path; returns the parameters or null. */
export function match(pattern, path) {
  const names = [];
  const regex = new RegExp('^' + pattern.replace(/:(\w+)/g, (_, name) => (names.push(name), '([^/]+)')) + '$');
  const found = regex.exec(path);
  if (!found) return null;
  return Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(found[i + 1])]));
}

// -- formatting -----------------------------------------------------------------------------------

export function money(cents, currency = 'USD') {
  if (cents === null || cents === undefined) return '';
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(cents / 100);
  } catch {
    return `${(cents / 100).toFixed(2)} ${currency}`;
  }
}

export function when(stamp) {
  if (!stamp) return '';
  return new Date(stamp).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

const STATUS_WORDS = {
  PENDING: 'Pending payment', PAID: 'Paid', PAYMENT_FAILED: 'Payment failed', PROCESSING: 'Processing',
  SHIPPED: 'Shipped', DELIVERED: 'Delivered', CANCELLED: 'Cancelled', REFUNDED: 'Refunded',
};

export function StatusBadge({ status }) {
  return html`<span class=${'badge status-' + String(status).toLowerCase()} data-status=${status}>
    ${STATUS_WORDS[status] || status}</span>`;
}

// -- errors, loading, empty -----------------------------------------------------------------------

// Words for codes whose API message is terse or technical; every other code shows its message.
const WORDS = {
  NETWORK: 'The shop cannot be reached. Check your connection and try again.',
  UNAUTHENTICATED: 'Please sign in (again) to continue.',
  FORBIDDEN: 'You are not allowed to do this.',
  RATE_LIMITED: 'Too many requests in a short time. Wait a moment and try again.',
  INTERNAL: 'Something went wrong on our side. Please try again.',
  SERVICE_UNAVAILABLE: 'This part of the shop is unavailable right now. Please try again shortly.',
  VALIDATION_ERROR: 'Some fields need attention.',
};
// Codes whose message is kept, with what the person can do next.
const NEXT_STEP = {
  PAYMENT_DECLINED: 'Nothing was charged and your cart is kept: try another card.',
  INSUFFICIENT_STOCK: 'Lower the quantity or remove the item.',
  CART_EMPTY: 'Add something to your cart first.',
};

/** A person-readable sentence for an ApiError (never raw JSON). */
export function describe(error) {
  if (!error) return '';
  const next = NEXT_STEP[error.code] ? ` ${NEXT_STEP[error.code]}` : '';
  const base = (WORDS[error.code] || error.message || 'Something went wrong.') + next;
  const wait = error.retryAfter ? ` (try again in ${error.retryAfter} s)` : '';
  return base + wait;
}

/** Field name → messages, from a VALIDATION_ERROR's details.fields. */
export function fieldErrors(error) {
  return (error && error.details && error.details.fields) || {};
}

export function ErrorMessage({ error }) {
  if (!error) return null;
  const fields = Object.entries(fieldErrors(error));
  return html`<div class="error" role="alert" data-code=${error.code}>
    <p>${describe(error)}</p>
    ${fields.length > 0 && html`<ul>${fields.map(([name, messages]) => html`<li key=${name}>
      <strong>${humanName(name)}</strong>: ${messages.join('; ')}</li>`)}</ul>`}
  </div>`;
}

function humanName(name) {
  return name.replace(/^.*\./, '').replace(/([A-Z])/g, ' $1').replace(/^./, (c) => c.toUpperCase());
}

export function Loading({ what = 'Loading…' }) {
  return html`<p class="loading" role="status" aria-live="polite"><span class="spinner" aria-hidden="true"></span>${what}</p>`;
}

export function Empty({ children }) {
  return html`<div class="empty" role="status">${children}</div>`;
}

export function Notice({ children }) {
  return html`<div class="notice" role="status">${children}</div>`;
}

/** Loads data with an async function; {value, error, loading, reload, set}. */
export function useLoad(load, deps) {
  const [result, setResult] = useState({ value: undefined, error: null, loading: true });
  const counter = useRef(0);
  const run = useCallback(() => {
    const mine = ++counter.current;
    setResult((previous) => ({ ...previous, error: null, loading: true }));
    load().then(
      (value) => mine === counter.current && setResult({ value, error: null, loading: false }),
      (error) => mine === counter.current && setResult({ value: undefined, error, loading: false }),
    );
  }, deps);
  useEffect(run, [run]);
  return { ...result, reload: run, set: (value) => setResult({ value, error: null, loading: false }) };
}

/** Runs a form's action: {busy, error, submit(fn)}; submit prevents the browser's own submit. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async (fn) => {
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (caught) {
      setError(caught);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  const submit = (fn) => (event) => {
    if (event && event.preventDefault) event.preventDefault();
    return run(fn);
  };
  return { busy, error, setError, run, submit };
}

// -- forms ----------------------------------------------------------------------------------------

let fieldCounter = 0;

/** A labelled input; `error` (a VALIDATION_ERROR) marks it when its `field` is named. */
export function Field({ label, name, field, error, hint, type = 'text', value, onInput, children, ...rest }) {
  const id = useRef(`f${++fieldCounter}`).current;
  const problems = fieldErrors(error)[field || name];
  const described = [hint && `${id}-hint`, problems && `${id}-error`].filter(Boolean).join(' ') || undefined;
  const control = children
    ? html`<select id=${id} name=${name} value=${value} onChange=${onInput} aria-invalid=${problems ? 'true' : undefined}
        aria-describedby=${described} ...${rest}>${children}</select>`
    : type === 'textarea'
      ? html`<textarea id=${id} name=${name} value=${value} onInput=${onInput} aria-describedby=${described}
          aria-invalid=${problems ? 'true' : undefined} ...${rest}></textarea>`
      : html`<input id=${id} name=${name} type=${type} value=${value} onInput=${onInput}
          aria-invalid=${problems ? 'true' : undefined} aria-describedby=${described} ...${rest} />`;
  return html`<div class=${'field' + (type === 'checkbox' ? ' checkbox' : '')}>
    <label for=${id}>${label}</label>
    ${control}
    ${hint && html`<small id=${`${id}-hint`} class="hint">${hint}</small>`}
    ${problems && html`<small id=${`${id}-error`} class="field-error">${problems.join('; ')}</small>`}
  </div>`;
}

/** Form state: [values, bind(name) → {name, value, onInput}, set]. */
export function useForm(initial) {
  const [values, setValues] = useState(initial);
  const bind = (name) => ({
    name,
    value: values[name] ?? '',
    onInput: (event) => {
      const target = event.currentTarget;
      const value = target.type === 'checkbox' ? target.checked : target.value;
      setValues((previous) => ({ ...previous, [name]: value }));
    },
  });
  return [values, bind, setValues];
}

// -- product images -------------------------------------------------------------------------------

/** A product image; when it cannot load (e.g. offline), a drawn placeholder with the initials. */
export function ProductImage({ product, src, size = 'card' }) {
  const [failed, setFailed] = useState(false);
  const url = src || (product.images && product.images[0]);
  if (!url || failed) {
    const hue = [...product.name].reduce((sum, c) => sum + c.charCodeAt(0), 0) % 360;
    const initials = product.name.split(/\s+/).slice(0, 2).map((word) => word[0]).join('').toUpperCase();
    return html`<div class=${'image placeholder ' + size} role="img" aria-label=${product.name}
      style=${`background: hsl(${hue} 45% 88%); color: hsl(${hue} 45% 30%)`}>${initials}</div>`;
  }
  return html`<img class=${'image ' + size} src=${url} alt=${product.name} loading="lazy"
    onError=${() => setFailed(true)} />`;
}

export function Stars({ rating }) {
  const average = rating ? rating.average : 0;
  const full = Math.round(average);
  return html`<span class="stars" aria-label=${`${average.toFixed(1)} out of 5 stars, ${rating ? rating.count : 0} reviews`}>
    <span aria-hidden="true">${'★'.repeat(full)}${'☆'.repeat(5 - full)}</span>
    <small> (${rating ? rating.count : 0})</small></span>`;
}

/** Countries offered in address forms (ISO 3166-1 alpha-2); any other code can be typed. */
export const COUNTRIES = [
  ['US', 'United States'], ['CA', 'Canada'], ['GB', 'United Kingdom'], ['DE', 'Germany'], ['FR', 'France'],
  ['NL', 'Netherlands'], ['ES', 'Spain'], ['IT', 'Italy'], ['SE', 'Sweden'], ['AU', 'Australia'], ['JP', 'Japan'],
];
