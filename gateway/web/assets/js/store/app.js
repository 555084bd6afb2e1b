// The storefront: its frame (header, search, cart count, account menu) and its page routes.
// The page paths here are the ones gateway/web.py answers with index.html.

import { auth, cart, currentUser, onCartChange, onSessionChange, restoreSession } from '../api.js';
import { html, interceptLinks, match, navigate, render, useEffect, useLocation, useState } from '../ui.js';
import { CatalogPage, ProductPage } from './catalog.js';
import { CartPage, CheckoutPage } from './cart.js';
import { ForgotPasswordPage, LoginPage, RegisterPage, ResetPasswordPage, VerifyEmailPage } from './auth.js';
import { AccountPage } from './account.js';
import { OrderPage, OrdersPage } from './orders.js';

/** Pages that need a signed-in user send a guest to /login?next=… first. */
const ROUTES = [
  ['/', CatalogPage],
  ['/products', CatalogPage],
  ['/products/:id', ProductPage],
  ['/cart', CartPage],
  ['/checkout', CheckoutPage, true],
  ['/login', LoginPage],
  ['/register', RegisterPage],
  ['/forgot-password', ForgotPasswordPage],
  ['/reset-password', ResetPasswordPage],
  ['/verify-email', VerifyEmailPage],
  ['/account', AccountPage, true],
  ['/account/:section', AccountPage, true],
  ['/orders', OrdersPage, true],
  ['/orders/:id', OrderPage, true],
];

function useUser() {
  const [user, setUser] = useState(currentUser());
  useEffect(() => onSessionChange(setUser), []);
  return user;
}

function useCartCount(user) {
  const [count, setCount] = useState(0);
  useEffect(() => onCartChange((value) => setCount(value ? value.itemCount : 0)), []);
  useEffect(() => {
    cart.get().catch(() => setCount(0));
  }, [user && user.id]);
  return count;
}

function Header({ user, count, where }) {
  const [q, setQ] = useState(where.query.get('q') || '');
  useEffect(() => setQ(where.query.get('q') || ''), [where.query.get('q')]);
  const search = (event) => {
    event.preventDefault();
    navigate(q.trim() ? `/products?q=${encodeURIComponent(q.trim())}` : '/products');
  };
  const signOut = async () => {
    await auth.logout().catch(() => {});
    navigate('/');
  };
  return html`<header class="top">
    <a class="brand" href="/">The Shop</a>
    <form class="search" role="search" onSubmit=${search}>
      <label for="site-search" class="visually-hidden">Search products</label>
      <input id="site-search" type="search" name="q" placeholder="Search products" value=${q}
        onInput=${(e) => setQ(e.currentTarget.value)} />
      <button type="submit">Search</button>
    </form>
    <nav aria-label="Account">
      <a href="/cart" class="cart-link">Cart <span class="count" data-testid="cart-count"
        aria-label=${`${count} items`}>${count}</span></a>
      ${user
        ? html`<a href="/orders">Orders</a><a href="/account">${user.firstName}</a>
            ${user.role === 'ADMIN' && html`<a href="/admin">Admin</a>`}
            <button type="button" class="link" onClick=${signOut}>Sign out</button>`
        : html`<a href="/login">Sign in</a><a href="/register">Register</a>`}
    </nav>
  </header>`;
}

function NotFound() {
  return html`<section><h1>Page not found</h1><p>There is nothing at this address. <a href="/">Back to the shop</a>.</p></section>`;
}

function App() {
  const where = useLocation();
  const user = useUser();
  const count = useCartCount(user);
  let page = null;
  for (const [pattern, Page, needsUser] of ROUTES) {
    const params = match(pattern, where.path);
    if (!params) continue;
    if (needsUser && !user) {
      page = html`<${LoginPage} where=${where} next=${where.path + location.search} />`;
    } else {
      page = html`<${Page} key=${pattern} params=${params} where=${where} user=${user} />`;
    }
    break;
  }
  useEffect(() => {
    const heading = document.querySelector('main h1');
    if (heading) document.title = `${heading.textContent} · The Shop`;
  });
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <${Header} user=${user} count=${count} where=${where} />
    <main id="main" tabindex="-1">${page || html`<${NotFound} />`}</main>
    <footer><p>The Shop · sandbox payments only: no real card is charged.</p></footer>`;
}

const root = document.getElementById('app');
interceptLinks(document.body);
restoreSession().finally(() => {
  root.textContent = ''; // the static "Loading…" line
  render(html`<${App} />`, root);
});
