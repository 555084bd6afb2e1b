// The admin console (/admin): signs in, refuses anyone who is not an ADMIN, and routes to the
// products, categories, orders and users screens. The API refuses non-admins on its own (403);
// the refusal here only spares them a console of errors.

import { auth, currentUser, onSessionChange, restoreSession } from '../api.js';
import {
  ErrorMessage, Field, html, interceptLinks, match, navigate, render, useAction, useEffect, useForm, useLocation,
  useState,
} from '../ui.js';
import { CategoriesPage, ProductEditPage, ProductsPage } from './catalog.js';
import { OrderAdminPage, OrdersAdminPage } from './orders.js';
import { UsersPage } from './users.js';

const ROUTES = [
  ['/admin', ProductsPage],
  ['/admin/products', ProductsPage],
  ['/admin/products/:id', ProductEditPage],
  ['/admin/categories', CategoriesPage],
  ['/admin/orders', OrdersAdminPage],
  ['/admin/orders/:id', OrderAdminPage],
  ['/admin/users', UsersPage],
];
const NAV = [['/admin/products', 'Products'], ['/admin/categories', 'Categories'], ['/admin/orders', 'Orders'],
  ['/admin/users', 'Users']];

function SignIn() {
  const [values, bind] = useForm({ email: '', password: '', otp: '' });
  const [needsOtp, setNeedsOtp] = useState(false);
  const action = useAction();
  const login = action.submit(async () => {
    try {
      await auth.login(values.email.trim(), values.password, needsOtp ? values.otp.trim() : undefined);
    } catch (error) {
      if (error.code !== 'MFA_REQUIRED') throw error;
      setNeedsOtp(true);
    }
  });
  return html`<section class="narrow" aria-labelledby="admin-login-title">
    <h1 id="admin-login-title">Admin sign in</h1>
    <form onSubmit=${login}>
      <${Field} label="Email" type="email" autocomplete="username" required ...${bind('email')} error=${action.error} />
      <${Field} label="Password" type="password" autocomplete="current-password" required ...${bind('password')} error=${action.error} />
      ${needsOtp && html`<${Field} label="Authentication code" inputmode="numeric" autocomplete="one-time-code" required
        ...${bind('otp')} error=${action.error} />`}
      <${ErrorMessage} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Sign in</button>
    </form>
  </section>`;
}

function Refused({ user }) {
  return html`<section class="narrow" aria-labelledby="refused-title">
    <h1 id="refused-title">Administrators only</h1>
    <div class="error" role="alert" data-code="FORBIDDEN"><p>The admin console is for administrators. You are signed in as
      ${user.email}, whose role is ${user.role}.</p></div>
    <p><a href="/">Go to the shop</a> or <button type="button" class="link" onClick=${() => auth.logout()}>sign out</button>
      and sign in as an administrator.</p>
  </section>`;
}

function App() {
  const where = useLocation();
  const [user, setUser] = useState(currentUser());
  useEffect(() => onSessionChange(setUser), []);
  let page = null;
  if (user && user.role === 'ADMIN') {
    for (const [pattern, Page] of ROUTES) {
      const params = match(pattern, where.path);
      if (params) {
        page = html`<${Page} key=${pattern} params=${params} where=${where} user=${user} />`;
        break;
      }
    }
  }
  const body = !user ? html`<${SignIn} />` : user.role !== 'ADMIN' ? html`<${Refused} user=${user} />`
    : page || html`<section><h1>Not found</h1><p>No such admin page.</p></section>`;
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="top admin">
      <a class="brand" href="/admin">The Shop · Admin</a>
      ${user && user.role === 'ADMIN' && html`<nav aria-label="Admin sections">${NAV.map(([path, label]) => html`<a key=${path}
        href=${path} aria-current=${where.path.startsWith(path) ? 'page' : undefined}>${label}</a>`)}</nav>`}
      <nav aria-label="Account">
        <a href="/">Storefront</a>
        ${user && html`<span>${user.email}</span>
          <button type="button" class="link" onClick=${() => auth.logout().then(() => navigate('/admin'))}>Sign out</button>`}
      </nav>
    </header>
    <main id="main" tabindex="-1">${body}</main>`;
}

interceptLinks(document.body);
restoreSession().finally(() => {
  const root = document.getElementById('app');
  root.textContent = ''; // the static "Loading…" line
  render(html`<${App} />`, root);
});
