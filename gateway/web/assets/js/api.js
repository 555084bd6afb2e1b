// Every call the web UI makes to the REST API (/api/v1), and nothing else: the storefront and the
// admin console import this module; no other file calls fetch. It keeps the signed-in session
// (the access token in memory only; the refresh token is the API's httpOnly cookie, so a reload
// signs in again through POST /auth/refresh) and the guest cart's X-Session-ID (localStorage).
// Errors are thrown as ApiError with the API's own `code` and `message` (the error envelope).

const BASE = '/api/v1';
const GUEST_KEY = 'shop.guestSession';
const FINAL_STATUSES = ['DELIVERED', 'CANCELLED', 'REFUNDED', 'PAYMENT_FAILED'];

/** An error answered by the API (or the network), as its envelope says it. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: the API could not be reached)
   * @param {string} code the envelope's stable code, e.g. PAYMENT_DECLINED
   * @param {string} message the envelope's human text
   * @param {Record<string, any>} [details]
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

/** @type {{accessToken: string|null, user: any}} */
const state = { accessToken: null, user: null };
const listeners = new Set();

/** Calls fn(user|null) whenever the signed-in user changes; returns the unsubscribe function. */
export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function currentUser() {
  return state.user;
}

const SIGNED_IN_KEY = 'shop.signedIn'; // not a secret: only says a refresh is worth trying

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

let refreshing = null;

/** Rotates the refresh cookie for a new access token; one at a time in this tab and, through the
 * Web Locks API, across tabs (two tabs presenting one refresh token would end the session). */
export function refreshSession() {
  if (!refreshing) {
    const run = async () => {
      const before = state.accessToken;
      try {
        const response = await fetch(`${BASE}/auth/refresh`, {
          method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: '{}',
        });
        if (!response.ok) {
          if (state.accessToken === before) setSession(null, null);
          return false;
        }
        const { data } = await response.json();
        state.accessToken = data.tokens.accessToken;
        const me = await request('GET', '/auth/me', { auth: true, retry: false });
        setSession(state.accessToken, me.data);
        return true;
      } catch {
        return false;
      }
    };
    const locked = navigator.locks ? navigator.locks.request('shop-refresh', run) : run();
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

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== '' && value !== false) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function errorFrom(response) {
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
 * @param {string} method
 * @param {string} path under /api/v1
 * @param {{body?: any, params?: Record<string, any>, auth?: boolean, guest?: boolean,
 *          idempotencyKey?: string, retry?: boolean}} [options]
 * @returns {Promise<any>} the parsed JSON body (null for 202/204)
 */
async function request(method, path, options = {}) {
  const { body, params, auth = false, guest = false, idempotencyKey, retry = true } = options;
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (state.accessToken && (auth || guest)) headers.Authorization = `Bearer ${state.accessToken}`;
  if (guest && !state.accessToken && guestSessionId()) headers['X-Session-ID'] = guestSessionId();
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let response;
  try {
    response = await fetch(BASE + path + query(params), {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The shop cannot be reached. Check your connection and try again.');
  }
  if (guest && !state.accessToken && response.headers.get('X-Session-ID')) {
    localStorage.setItem(GUEST_KEY, response.headers.get('X-Session-ID'));
  }
  if (response.status === 401 && retry && state.accessToken && (auth || guest)) {
    if (await refreshSession()) return request(method, path, { ...options, retry: false });
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204 || response.status === 202) return null;
  return response.json();
}

const data = (promise) => promise.then((body) => body.data);
const list = (promise) => promise.then((body) => ({ items: body.data, page: body.page }));
export const newIdempotencyKey = () => crypto.randomUUID();

// -- auth and the signed-in user ---------------------------------------------------------------

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
    const response = await fetch(`${BASE}/cart/merge`, { method: 'POST', headers, credentials: 'same-origin' });
    if (response.ok || response.status === 400 || response.status === 404) forgetGuestSession();
  } catch {
    // Kept for the next sign-in: the guest's lines are not lost.
  }
}

export const auth = {
  register: (fields) => request('POST', '/auth/register', { body: fields }).then(signedIn),
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
  revokeSession: (id) => request('DELETE', `/auth/sessions/${encodeURIComponent(id)}`, { auth: true }),
  revokeAllSessions: () => data(request('DELETE', '/auth/sessions', { auth: true })),
  changePassword: (currentPassword, newPassword) =>
    request('POST', '/auth/password/change', { auth: true, body: { currentPassword, newPassword } }),
  forgotPassword: (email) => request('POST', '/auth/password/forgot', { body: { email } }),
  resetPassword: (token, newPassword) => request('POST', '/auth/password/reset', { body: { token, newPassword } }),
  verifyEmail: (token) => request('POST', '/auth/email/verify', { body: { token } }),
  mfaSetup: () => data(request('POST', '/auth/mfa/setup', { auth: true })),
  mfaEnable: (otp) => data(request('POST', '/auth/mfa/enable', { auth: true, body: { otp } })),
  mfaDisable: (code) => request('POST', '/auth/mfa/disable', {
    auth: true, body: /^\d{6}$/.test(code) ? { otp: code } : { recoveryCode: code },
  }),
};

export const users = {
  updateProfile: async (fields) => {
    const user = await data(request('PATCH', '/users/me', { auth: true, body: fields }));
    setSession(state.accessToken, user);
    return user;
  },
  deleteAccount: async (password) => {
    await request('DELETE', '/users/me', { auth: true, body: { password } });
    setSession(null, null);
  },
  addresses: () => list(request('GET', '/users/me/addresses', { auth: true })),
  createAddress: (address) => data(request('POST', '/users/me/addresses', { auth: true, body: address })),
  updateAddress: (id, fields) =>
    data(request('PATCH', `/users/me/addresses/${encodeURIComponent(id)}`, { auth: true, body: fields })),
  deleteAddress: (id) => request('DELETE', `/users/me/addresses/${encodeURIComponent(id)}`, { auth: true }),
  // admin
  list: (params) => list(request('GET', '/users', { auth: true, params })),
  get: (id) => data(request('GET', `/users/${encodeURIComponent(id)}`, { auth: true })),
  update: (id, fields) => data(request('PATCH', `/users/${encodeURIComponent(id)}`, { auth: true, body: fields })),
};

// -- catalog --------------------------------------------------------------------------------------

export const catalog = {
  /** @param {{q?: string, category?: string, brand?: string, minPriceCents?: number, maxPriceCents?: number,
   *           inStock?: boolean, sort?: string, pageSize?: number, pageToken?: string}} params */
  products: (params) => list(request('GET', '/products', { params })),
  product: (id) => data(request('GET', `/products/${encodeURIComponent(id)}`, { auth: true })),
  createProduct: (fields) =>
    data(request('POST', '/products', { auth: true, body: fields, idempotencyKey: newIdempotencyKey() })),
  updateProduct: (id, fields) =>
    data(request('PATCH', `/products/${encodeURIComponent(id)}`, { auth: true, body: fields })),
  archiveProduct: (id) => request('DELETE', `/products/${encodeURIComponent(id)}`, { auth: true }),
  adjustStock: (id, delta, reason) => data(request('POST', `/products/${encodeURIComponent(id)}/stock-adjustments`, {
    auth: true, body: { delta, reason }, idempotencyKey: newIdempotencyKey(),
  })),
  categories: () => list(request('GET', '/categories')),
  createCategory: (fields) => data(request('POST', '/categories', { auth: true, body: fields })),
  reviews: (id, params) => list(request('GET', `/products/${encodeURIComponent(id)}/reviews`, { params })),
  createReview: (id, fields) =>
    data(request('POST', `/products/${encodeURIComponent(id)}/reviews`, { auth: true, body: fields })),
  wishlist: () => list(request('GET', '/wishlist', { auth: true })),
  addToWishlist: (id) => request('PUT', `/wishlist/${encodeURIComponent(id)}`, { auth: true }),
  removeFromWishlist: (id) => request('DELETE', `/wishlist/${encodeURIComponent(id)}`, { auth: true }),
};

// -- cart (a signed-in user's, else the guest's named by X-Session-ID) ---------------------------

const cartListeners = new Set();
/** Calls fn(cart) after every cart change made through this module. */
export function onCartChange(fn) {
  cartListeners.add(fn);
  return () => cartListeners.delete(fn);
}
const announce = (cart) => {
  for (const fn of cartListeners) fn(cart);
  return cart;
};

export const cart = {
  get: () => data(request('GET', '/cart', { guest: true })).then(announce),
  add: (productId, quantity = 1) =>
    data(request('POST', '/cart/items', { guest: true, body: { productId, quantity } })).then(announce),
  setQuantity: (productId, quantity) =>
    data(request('PUT', `/cart/items/${encodeURIComponent(productId)}`, { guest: true, body: { quantity } }))
      .then(announce),
  remove: (productId) =>
    data(request('DELETE', `/cart/items/${encodeURIComponent(productId)}`, { guest: true })).then(announce),
  clear: () => request('DELETE', '/cart', { guest: true }).then(() => announce(null)),
};

// -- orders ---------------------------------------------------------------------------------------

export const orders = {
  /** @param {{addressId?: string, shippingAddress?: object, paymentToken: string, idempotencyKey: string}} checkout */
  create: ({ addressId, shippingAddress, paymentToken, idempotencyKey }) => data(request('POST', '/orders', {
    auth: true,
    idempotencyKey,
    body: { ...(addressId ? { addressId } : { shippingAddress }), payment: { method: 'card', token: paymentToken } },
  })),
  list: (params) => list(request('GET', '/orders', { auth: true, params })),
  get: (id) => data(request('GET', `/orders/${encodeURIComponent(id)}`, { auth: true })),
  cancel: (id, reason) =>
    data(request('POST', `/orders/${encodeURIComponent(id)}/cancel`, { auth: true, body: reason ? { reason } : {} })),
  setStatus: (id, fields) =>
    data(request('PATCH', `/orders/${encodeURIComponent(id)}/status`, { auth: true, body: fields })),
  payments: (id) => data(request('GET', `/orders/${encodeURIComponent(id)}/payments`, { auth: true })),
  refund: (id, fields, idempotencyKey) => data(request('POST', `/orders/${encodeURIComponent(id)}/refunds`, {
    auth: true, body: fields, idempotencyKey,
  })),
  isFinal: (status) => FINAL_STATUSES.includes(status),

  /**
   * Follows an order's status over Server-Sent Events (GET /orders/{id}/events). EventSource
   * cannot send the Authorization header, so the stream is read with fetch. Reconnects with a
   * growing pause while the order is not final, sending Last-Event-ID so that no change is
   * missed in between; returns the function that stops it.
   * @param {string} id
   * @param {{onStatus: (event: {status: string, at: string, note: string|null, order: any}) => void,
   *          onError?: (error: ApiError) => void, onLive?: (live: boolean) => void}} handlers
   */
  watch(id, { onStatus, onError = () => {}, onLive = () => {} }) {
    const controller = new AbortController();
    let stopped = false;
    let last = null;
    /** @type {string|null} */
    let lastEventId = null;
    const follow = async () => {
      for (let attempt = 0; !stopped; attempt += 1) {
        try {
          /** @type {Record<string, string>} */
          const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${state.accessToken}` };
          if (lastEventId) headers['Last-Event-ID'] = lastEventId;
          const response = await fetch(`${BASE}/orders/${encodeURIComponent(id)}/events`, {
            headers, signal: controller.signal,
          });
          if (response.status === 401 && (await refreshSession())) continue;
          if (!response.ok) throw await errorFrom(response);
          onLive(true);
          await readEvents(response, (event, payload, eventId) => {
            if (eventId) lastEventId = eventId;
            if (event === 'status') {
              attempt = 0;
              last = payload.status;
              onStatus(payload);
            } else if (event === 'error') {
              onError(new ApiError(0, payload.code || 'STREAM_ERROR', 'Live updates stopped; reconnecting.'));
            }
          });
          onLive(false);
          if (last && FINAL_STATUSES.includes(last)) return;
        } catch (error) {
          if (stopped || (error && error.name === 'AbortError')) return;
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
 * @param {(event: string, payload: any, id: string|null) => void} dispatch
 */
async function readEvents(response, dispatch) {
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
