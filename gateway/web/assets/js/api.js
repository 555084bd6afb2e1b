// Every call the web UI makes to the REST API (/api/v1), and nothing else: the storefront and the
// admin console import this module; no other file calls fetch. It keeps the signed-in session
// (the access token in memory only; the refresh token is the API's httpOnly cookie, so a reload
// signs in again through POST /auth/refresh) and the guest cart's X-Session-ID (localStorage).
// Errors are thrown as ApiError with the API's own `code` and `message` (the error envelope).
//
// Typed against the contract (JSDoc only: the browser runs this file as it is). The types come from
// the gateway's /openapi.json through openapi-typescript; scripts/web_types.py (and `make test`)
// runs tsc --checkJs --strict over this file, so a route, parameter, body or field used here that
// the contract does not have fails the check. Routes are named as the document names them
// ('/products/{productId}') and their path parameters passed apart, so the route is checked too.

/**
 * @import { ApiPath, Body, Method, PathFor, Query, RequestArgs, Schemas, Success, UrlArgs }
 *   from '../../typecheck/contract'
 */
/**
 * @typedef {Schemas['User']} User
 * @typedef {Schemas['Cart']} Cart
 * @typedef {Schemas['Order']} Order
 * @typedef {Order['status']} OrderStatus
 * @typedef {Schemas['AddressInput']} AddressInput
 * @typedef {Schemas['PageInfo']} PageInfo
 */
/**
 * A page of a list: its items and the cursor to the next.
 * @template T
 * @typedef {{items: T[], page: PageInfo}} Page
 */
/**
 * The `data` of an `event: status` on GET /orders/{orderId}/events (the gateway's OrderEvent; the
 * document types the stream as text, so its shape is written here from the Order it carries).
 * @typedef {{status: OrderStatus, at: string|null, note: string|null, order: Order}} OrderEvent
 */
/** What request() and url() take at run time (their callers are checked against the operation).
 * @typedef {{path?: Record<string, string>, query?: Record<string, unknown>, body?: unknown, auth?: boolean,
 *            guest?: boolean, idempotencyKey?: string, retry?: boolean}} AnyOptions
 */

const BASE = '/api/v1';
const GUEST_KEY = 'shop.guestSession';
/** @type {OrderStatus[]} */
const FINAL_STATUSES = ['DELIVERED', 'CANCELLED', 'REFUNDED', 'PAYMENT_FAILED'];

/** An error answered by the API (or the network), as its envelope says it. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: the API could not be reached)
   * @param {string} code the envelope's stable code, e.g. PAYMENT_DECLINED
   * @param {string} message the envelope's human text
   * @param {Record<string, unknown>|null} [details]
   * @param {string|null} [requestId]
   * @param {number|null} [retryAfter] seconds, from Retry-After
   */
  constructor(status, code, message, details = {}, requestId = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

// -- the session -----------------------------------------------------------------------------

/** @type {{accessToken: string|null, user: User|null}} */
const state = { accessToken: null, user: null };
/** @type {Set<(user: User|null) => void>} */
const listeners = new Set();

/**
 * Calls fn(user|null) whenever the signed-in user changes; returns the unsubscribe function.
 * @param {(user: User|null) => void} fn
 */
export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function currentUser() {
  return state.user;
}

const SIGNED_IN_KEY = 'shop.signedIn'; // not a secret: only says a refresh is worth trying

/**
 * @param {string|null} accessToken
 * @param {User|null} user
 */
function setSession(accessToken, user) {
  state.accessToken = accessToken;
  state.user = user;
  if (user) localStorage.setItem(SIGNED_IN_KEY, '1');
  else localStorage.removeItem(SIGNED_IN_KEY);
  for (const fn of listeners) fn(user);
}

export function guestSessionId() {
  return localStorage.getItem(GUEST_KEY);
}

function forgetGuestSession() {
  localStorage.removeItem(GUEST_KEY);
}

/** @type {Promise<boolean>|null} */
let refreshing = null;

/** Rotates the refresh cookie for a new access token; one at a time in this tab and, through the
 * Web Locks API, across tabs (two tabs presenting one refresh token would end the session). */
export function refreshSession() {
  if (!refreshing) {
    const run = async () => {
      const before = state.accessToken;
      try {
        const response = await fetch(url('POST', '/auth/refresh'), {
          method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: '{}',
        });
        if (!response.ok) {
          if (state.accessToken === before) setSession(null, null);
          return false;
        }
        /** @type {Success<'/auth/refresh', 'POST'>} */
        const { data } = await response.json();
        state.accessToken = data.tokens.accessToken;
        const me = await request('GET', '/auth/me', { auth: true, retry: false });
        setSession(state.accessToken, me.data);
        return true;
      } catch {
        return false;
      }
    };
    // The lock's promise settles with run's result awaited (lib.dom types it as a promise of a promise).
    const locked = navigator.locks
      ? /** @type {Promise<boolean>} */ (/** @type {unknown} */ (navigator.locks.request('shop-refresh', run)))
      : run();
    refreshing = locked.finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** At start: signs in again from the refresh cookie when this browser had a session. */
export async function restoreSession() {
  if (!localStorage.getItem(SIGNED_IN_KEY)) return null;
  await refreshSession();
  return state.user;
}

// -- the one request function ----------------------------------------------------------------

/**
 * The URL of an operation: BASE + the route with its path parameters filled in (encoded) + the query
 * (empty values left out).
 * @template {Method} M
 * @template {PathFor<M>} P
 * @param {M} method the operation's method: its path parameters and query are checked against it
 * @param {P} route as the contract writes it, e.g. '/products/{productId}'
 * @param {UrlArgs<P, M>} parts `{path, query}`
 */
function url(method, route, ...[parts]) {
  return address(route, /** @type {AnyOptions} */ (parts || {}));
}

/**
 * @param {string} route
 * @param {AnyOptions} parts
 */
function address(route, { path = {}, query = {} }) {
  const filled = route.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(path[name]));
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '' && value !== false) search.set(key, String(value));
  }
  const text = search.toString();
  return BASE + filled + (text ? `?${text}` : '');
}

/** @param {Response} response */
async function errorFrom(response) {
  /** @type {Schemas['ErrorEnvelope']|null} */
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    envelope = null;
  }
  const error = envelope && envelope.error;
  const retryAfter = Number(response.headers.get('Retry-After')) || null;
  if (error && error.code) {
    return new ApiError(response.status, error.code, error.message, error.details, error.requestId, retryAfter);
  }
  return new ApiError(response.status, 'HTTP_' + response.status, `The shop answered ${response.status}.`, {}, null,
    retryAfter);
}

/**
 * One call of the API, typed by the contract: the route must be one of the document's, `path`,
 * `query` and `body` its operation's, `idempotencyKey` given where the contract requires it; the
 * answer is the operation's success body (null for 202/204).
 * @template {Method} M
 * @template {PathFor<M>} P
 * @param {M} method
 * @param {P} route under /api/v1, as the contract writes it, e.g. '/products/{productId}'
 * @param {RequestArgs<P, M>} options
 *   `{path, query, body, auth, guest, idempotencyKey, retry}`, required when the operation has
 *   something required to send
 * @returns {Promise<Success<P, M>>}
 */
function request(method, route, ...[options]) {
  return send(method, route, /** @type {AnyOptions} */ (options || {}));
}

/**
 * @param {string} method
 * @param {ApiPath} route
 * @param {AnyOptions} options
 * @returns {Promise<any>} the parsed JSON body (null for 202/204)
 */
async function send(method, route, options) {
  const { body, auth = false, guest = false, idempotencyKey, retry = true } = options;
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (state.accessToken && (auth || guest)) headers.Authorization = `Bearer ${state.accessToken}`;
  const guestId = guestSessionId();
  if (guest && !state.accessToken && guestId) headers['X-Session-ID'] = guestId;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let response;
  try {
    response = await fetch(address(route, options), {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The shop cannot be reached. Check your connection and try again.');
  }
  const issued = response.headers.get('X-Session-ID');
  if (guest && !state.accessToken && issued) localStorage.setItem(GUEST_KEY, issued);
  if (response.status === 401 && retry && state.accessToken && (auth || guest)) {
    if (await refreshSession()) return send(method, route, { ...options, retry: false });
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204 || response.status === 202) return null;
  return response.json();
}

/**
 * The `data` of an envelope.
 * @template T
 * @param {Promise<{data: T}>} promise
 * @returns {Promise<T>}
 */
const data = (promise) => promise.then((body) => body.data);
/**
 * A page envelope as {items, page}.
 * @template T
 * @param {Promise<{data: T[], page: PageInfo}>} promise
 * @returns {Promise<Page<T>>}
 */
const list = (promise) => promise.then((body) => ({ items: body.data, page: body.page }));
export const newIdempotencyKey = () => crypto.randomUUID();

// -- auth and the signed-in user ---------------------------------------------------------------

/**
 * @param {Schemas['UserAndTokensEnvelope']} body the answer of register or login
 * @returns {Promise<User>}
 */
async function signedIn(body) {
  setSession(body.data.tokens.accessToken, body.data.user);
  await mergeGuestCart();
  return body.data.user;
}

/** Adds the guest cart's lines into the user's cart, then forgets the guest session. */
async function mergeGuestCart() {
  const sessionId = guestSessionId();
  if (!sessionId) return;
  const headers = { 'X-Session-ID': sessionId, Authorization: `Bearer ${state.accessToken}` };
  try {
    const response = await fetch(url('POST', '/cart/merge'), { method: 'POST', headers, credentials: 'same-origin' });
    if (response.ok || response.status === 400 || response.status === 404) forgetGuestSession();
  } catch {
    // Kept for the next sign-in: the guest's lines are not lost.
  }
}

export const auth = {
  /** @param {Body<'/auth/register', 'POST'>} fields */
  register: (fields) => request('POST', '/auth/register', { body: fields }).then(signedIn),
  /**
   * @param {string} email
   * @param {string} password
   * @param {string} [otp] the TOTP code or a recovery code, when the account has MFA
   */
  login: (email, password, otp) =>
    request('POST', '/auth/login', { body: otp ? { email, password, otp } : { email, password } }).then(signedIn),
  async logout() {
    try {
      await request('POST', '/auth/logout', { auth: true, body: {}, retry: false });
    } finally {
      setSession(null, null);
      forgetGuestSession();
    }
  },
  /** Re-reads the signed-in user (e.g. after turning MFA on) and tells the listeners. */
  me: async () => {
    const user = await data(request('GET', '/auth/me', { auth: true }));
    setSession(state.accessToken, user);
    return user;
  },
  sessions: () => list(request('GET', '/auth/sessions', { auth: true })),
  /** @param {string} id */
  revokeSession: (id) => request('DELETE', '/auth/sessions/{sessionId}', { auth: true, path: { sessionId: id } }),
  revokeAllSessions: () => data(request('DELETE', '/auth/sessions', { auth: true })),
  /**
   * @param {string} currentPassword
   * @param {string} newPassword
   */
  changePassword: (currentPassword, newPassword) =>
    request('POST', '/auth/password/change', { auth: true, body: { currentPassword, newPassword } }),
  /** @param {string} email */
  forgotPassword: (email) => request('POST', '/auth/password/forgot', { body: { email } }),
  /**
   * @param {string} token from the emailed link
   * @param {string} newPassword
   */
  resetPassword: (token, newPassword) => request('POST', '/auth/password/reset', { body: { token, newPassword } }),
  /** @param {string} token from the emailed link */
  verifyEmail: (token) => request('POST', '/auth/email/verify', { body: { token } }),
  mfaSetup: () => data(request('POST', '/auth/mfa/setup', { auth: true })),
  /** @param {string} otp */
  mfaEnable: (otp) => data(request('POST', '/auth/mfa/enable', { auth: true, body: { otp } })),
  /** @param {string} code a TOTP code (6 digits) or a recovery code */
  mfaDisable: (code) => request('POST', '/auth/mfa/disable', {
    auth: true, body: /^\d{6}$/.test(code) ? { otp: code } : { recoveryCode: code },
  }),
};

export const users = {
  /** @param {Body<'/users/me', 'PATCH'>} fields */
  updateProfile: async (fields) => {
    const user = await data(request('PATCH', '/users/me', { auth: true, body: fields }));
    setSession(state.accessToken, user);
    return user;
  },
  /** @param {string} password */
  deleteAccount: async (password) => {
    await request('DELETE', '/users/me', { auth: true, body: { password } });
    setSession(null, null);
  },
  addresses: () => list(request('GET', '/users/me/addresses', { auth: true })),
  /** @param {Body<'/users/me/addresses', 'POST'>} address */
  createAddress: (address) => data(request('POST', '/users/me/addresses', { auth: true, body: address })),
  /**
   * @param {string} id
   * @param {Body<'/users/me/addresses/{addressId}', 'PATCH'>} fields
   */
  updateAddress: (id, fields) =>
    data(request('PATCH', '/users/me/addresses/{addressId}', { auth: true, path: { addressId: id }, body: fields })),
  /** @param {string} id */
  deleteAddress: (id) => request('DELETE', '/users/me/addresses/{addressId}', { auth: true, path: { addressId: id } }),
  // admin
  /** @param {Query<'/users', 'GET'>} [query] */
  list: (query) => list(request('GET', '/users', { auth: true, query })),
  /** @param {string} id */
  get: (id) => data(request('GET', '/users/{userId}', { auth: true, path: { userId: id } })),
  /**
   * @param {string} id
   * @param {Body<'/users/{userId}', 'PATCH'>} fields
   */
  update: (id, fields) => data(request('PATCH', '/users/{userId}', { auth: true, path: { userId: id }, body: fields })),
};

// -- catalog --------------------------------------------------------------------------------------

export const catalog = {
  /** @param {Query<'/products', 'GET'>} [query] search, filters, sort and the page */
  products: (query) => list(request('GET', '/products', { query })),
  /** @param {string} id */
  product: (id) => data(request('GET', '/products/{productId}', { auth: true, path: { productId: id } })),
  /** @param {Body<'/products', 'POST'>} fields */
  createProduct: (fields) =>
    data(request('POST', '/products', { auth: true, body: fields, idempotencyKey: newIdempotencyKey() })),
  /**
   * @param {string} id
   * @param {Body<'/products/{productId}', 'PATCH'>} fields
   */
  updateProduct: (id, fields) =>
    data(request('PATCH', '/products/{productId}', { auth: true, path: { productId: id }, body: fields })),
  /** @param {string} id */
  archiveProduct: (id) => request('DELETE', '/products/{productId}', { auth: true, path: { productId: id } }),
  /**
   * @param {string} id
   * @param {number} delta
   * @param {string} reason
   */
  adjustStock: (id, delta, reason) => data(request('POST', '/products/{productId}/stock-adjustments', {
    auth: true, path: { productId: id }, body: { delta, reason }, idempotencyKey: newIdempotencyKey(),
  })),
  categories: () => list(request('GET', '/categories')),
  /** @param {Body<'/categories', 'POST'>} fields */
  createCategory: (fields) => data(request('POST', '/categories', { auth: true, body: fields })),
  /**
   * @param {string} id
   * @param {Query<'/products/{productId}/reviews', 'GET'>} [query]
   */
  reviews: (id, query) => list(request('GET', '/products/{productId}/reviews', { path: { productId: id }, query })),
  /**
   * @param {string} id
   * @param {Body<'/products/{productId}/reviews', 'POST'>} fields
   */
  createReview: (id, fields) =>
    data(request('POST', '/products/{productId}/reviews', { auth: true, path: { productId: id }, body: fields })),
  wishlist: () => list(request('GET', '/wishlist', { auth: true })),
  /** @param {string} id */
  addToWishlist: (id) => request('PUT', '/wishlist/{productId}', { auth: true, path: { productId: id } }),
  /** @param {string} id */
  removeFromWishlist: (id) => request('DELETE', '/wishlist/{productId}', { auth: true, path: { productId: id } }),
};

// -- cart (a signed-in user's, else the guest's named by X-Session-ID) ---------------------------

/** @type {Set<(cart: Cart|null) => void>} */
const cartListeners = new Set();
/**
 * Calls fn(cart) after every cart change made through this module.
 * @param {(cart: Cart|null) => void} fn
 */
export function onCartChange(fn) {
  cartListeners.add(fn);
  return () => cartListeners.delete(fn);
}
/**
 * @template {Cart|null} C
 * @param {C} cart
 * @returns {C}
 */
const announce = (cart) => {
  for (const fn of cartListeners) fn(cart);
  return cart;
};

export const cart = {
  get: () => data(request('GET', '/cart', { guest: true })).then(announce),
  /**
   * @param {string} productId
   * @param {number} [quantity]
   */
  add: (productId, quantity = 1) =>
    data(request('POST', '/cart/items', { guest: true, body: { productId, quantity } })).then(announce),
  /**
   * @param {string} productId
   * @param {number} quantity 0 removes the line
   */
  setQuantity: (productId, quantity) =>
    data(request('PUT', '/cart/items/{productId}', { guest: true, path: { productId }, body: { quantity } }))
      .then(announce),
  /** @param {string} productId */
  remove: (productId) =>
    data(request('DELETE', '/cart/items/{productId}', { guest: true, path: { productId } })).then(announce),
  clear: () => request('DELETE', '/cart', { guest: true }).then(() => announce(null)),
};

// -- orders ---------------------------------------------------------------------------------------

export const orders = {
  /**
   * Places the order: a saved address by its id, or a new one; the card's sandbox token.
   * @param {{addressId?: string, shippingAddress?: AddressInput, paymentToken: string, idempotencyKey: string}} checkout
   */
  create: ({ addressId, shippingAddress, paymentToken, idempotencyKey }) => data(request('POST', '/orders', {
    auth: true,
    idempotencyKey,
    body: { ...(addressId ? { addressId } : { shippingAddress }), payment: { method: 'card', token: paymentToken } },
  })),
  /** @param {Query<'/orders', 'GET'>} [query] */
  list: (query) => list(request('GET', '/orders', { auth: true, query })),
  /** @param {string} id */
  get: (id) => data(request('GET', '/orders/{orderId}', { auth: true, path: { orderId: id } })),
  /**
   * @param {string} id
   * @param {string} [reason]
   */
  cancel: (id, reason) => data(request('POST', '/orders/{orderId}/cancel', {
    auth: true, path: { orderId: id }, body: reason ? { reason } : {},
  })),
  /**
   * @param {string} id
   * @param {Body<'/orders/{orderId}/status', 'PATCH'>} fields
   */
  setStatus: (id, fields) =>
    data(request('PATCH', '/orders/{orderId}/status', { auth: true, path: { orderId: id }, body: fields })),
  /** @param {string} id */
  payments: (id) => data(request('GET', '/orders/{orderId}/payments', { auth: true, path: { orderId: id } })),
  /**
   * @param {string} id
   * @param {Body<'/orders/{orderId}/refunds', 'POST'>} fields
   * @param {string} idempotencyKey kept by the caller across retries of one refund
   */
  refund: (id, fields, idempotencyKey) => data(request('POST', '/orders/{orderId}/refunds', {
    auth: true, path: { orderId: id }, body: fields, idempotencyKey,
  })),
  /** @param {OrderStatus} status */
  isFinal: (status) => FINAL_STATUSES.includes(status),

  /**
   * Follows an order's status over Server-Sent Events (GET /orders/{id}/events). EventSource
   * cannot send the Authorization header, so the stream is read with fetch. Reconnects with a
   * growing pause while the order is not final, sending Last-Event-ID so that no change is
   * missed in between; returns the function that stops it.
   * @param {string} id
   * @param {{onStatus: (event: OrderEvent) => void, onError?: (error: ApiError) => void,
   *          onLive?: (live: boolean) => void}} handlers
   */
  watch(id, { onStatus, onError = () => {}, onLive = () => {} }) {
    const controller = new AbortController();
    let stopped = false;
    /** @type {OrderStatus|null} */
    let last = null;
    /** @type {string|null} */
    let lastEventId = null;
    const follow = async () => {
      for (let attempt = 0; !stopped; attempt += 1) {
        try {
          /** @type {Record<string, string>} */
          const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${state.accessToken}` };
          if (lastEventId) headers['Last-Event-ID'] = lastEventId;
          const response = await fetch(url('GET', '/orders/{orderId}/events', { path: { orderId: id } }), {
            headers, signal: controller.signal,
          });
          if (response.status === 401 && (await refreshSession())) continue;
          if (!response.ok) throw await errorFrom(response);
          onLive(true);
          await readEvents(response, (event, payload, eventId) => {
            if (eventId) lastEventId = eventId;
            if (event === 'status') {
              const change = /** @type {OrderEvent} */ (payload);
              attempt = 0;
              last = change.status;
              onStatus(change);
            } else if (event === 'error') {
              const { code } = /** @type {{code?: string}} */ (payload);
              onError(new ApiError(0, code || 'STREAM_ERROR', 'Live updates stopped; reconnecting.'));
            }
          });
          onLive(false);
          if (last && FINAL_STATUSES.includes(last)) return;
        } catch (error) {
          if (stopped || (error && /** @type {Error} */ (error).name === 'AbortError')) return;
          onLive(false);
          onError(error instanceof ApiError ? error : new ApiError(0, 'NETWORK', 'Live updates lost; reconnecting.'));
          if (error instanceof ApiError && [403, 404].includes(error.status)) return;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** attempt, 15000)));
      }
    };
    follow();
    return () => {
      stopped = true;
      controller.abort();
    };
  },
};

/**
 * Reads `id:`/`event:`/`data:` blocks of a text/event-stream body until it ends.
 * @param {Response} response
 * @param {(event: string, payload: unknown, id: string|null) => void} dispatch
 */
async function readEvents(response, dispatch) {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      /** @type {string|null} */
      let eventId = null;
      /** @type {string[]} */
      const lines = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('id:')) eventId = line.slice(3).trim();
        else if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) lines.push(line.slice(5).replace(/^ /, ''));
      }
      if (lines.length) {
        let payload;
        try {
          payload = JSON.parse(lines.join('\n'));
        } catch {
          continue;
        }
        dispatch(event, payload, eventId);
      }
    }
  }
}
