// The account: profile, addresses, security (password, two-factor authentication with a QR code,
// sessions) and the wishlist, one section per path (/account, /account/addresses, …).

import qrcode from 'qrcode-generator';
import { auth, catalog, users } from '../api.js';
import {
  Empty, ErrorMessage, Field, Loading, Notice, html, navigate, useAction, useForm, useLoad, useState, when,
} from '../ui.js';
import { AddressFields, EMPTY_ADDRESS, addressBody, addressLine } from './address.js';
import { PASSWORD_RULES } from './auth.js';
import { ProductCard } from './catalog.js';

const SECTIONS = [['', 'Profile'], ['addresses', 'Addresses'], ['security', 'Security'], ['wishlist', 'Wishlist']];

function Profile({ user, where }) {
  const [values, bind] = useForm({ firstName: user.firstName, lastName: user.lastName, phone: user.phone || '' });
  const [saved, setSaved] = useState(false);
  const action = useAction();
  const save = action.submit(async () => {
    setSaved(false);
    await users.updateProfile({ firstName: values.firstName, lastName: values.lastName, phone: values.phone || null });
    setSaved(true);
  });
  return html`<section aria-labelledby="profile-title">
    <h2 id="profile-title">Profile</h2>
    ${where.query.get('welcome') && html`<${Notice}>Welcome, ${user.firstName}! Your account is ready.<//>`}
    <p>${user.email} · ${user.emailVerified
      ? html`<span class="badge">Email verified</span>`
      : html`<span class="badge warn">Email not verified yet: follow the link we emailed you</span>`}</p>
    <form onSubmit=${save}>
      <div class="row">
        <${Field} label="First name" required ...${bind('firstName')} error=${action.error} />
        <${Field} label="Last name" required ...${bind('lastName')} error=${action.error} />
      </div>
      <${Field} label="Phone (optional)" type="tel" ...${bind('phone')} error=${action.error} />
      <${ErrorMessage} error=${action.error} />
      ${saved && html`<${Notice}>Saved.<//>`}
      <button type="submit" disabled=${action.busy}>Save profile</button>
    </form>
  </section>`;
}

function AddressForm({ initial, onDone, onCancel }) {
  const [values, bind] = useForm({ ...EMPTY_ADDRESS, ...initial, isDefault: Boolean(initial && initial.isDefault) });
  const action = useAction();
  const save = action.submit(async () => {
    const body = { ...addressBody(values), ...(values.isDefault ? { isDefault: true } : {}) };
    if (initial && initial.id) await users.updateAddress(initial.id, body);
    else await users.createAddress(body);
    onDone();
  });
  return html`<form onSubmit=${save} aria-label=${initial && initial.id ? 'Edit address' : 'New address'}>
    <${AddressFields} bind=${bind} error=${action.error} />
    <${Field} label="Use as my default address" type="checkbox" checked=${values.isDefault} ...${bind('isDefault')} />
    <${ErrorMessage} error=${action.error} />
    <div class="actions"><button type="submit" disabled=${action.busy}>Save address</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button></div>
  </form>`;
}

function Addresses() {
  const addresses = useLoad(() => users.addresses().then((r) => r.items), []);
  const [editing, setEditing] = useState(null);
  const action = useAction();
  const done = () => {
    setEditing(null);
    addresses.reload();
  };
  const remove = (a) => action.run(async () => {
    await users.deleteAddress(a.id);
    addresses.reload();
  });
  const makeDefault = (a) => action.run(async () => {
    await users.updateAddress(a.id, { isDefault: true });
    addresses.reload();
  });
  return html`<section aria-labelledby="addresses-title">
    <h2 id="addresses-title">Addresses</h2>
    ${addresses.loading && html`<${Loading} />`}
    <${ErrorMessage} error=${addresses.error || action.error} />
    ${addresses.value && addresses.value.length === 0 && !editing && html`<${Empty}><p>No saved addresses yet.</p><//>`}
    <ul class="plain">${(addresses.value || []).map((a) => html`<li key=${a.id} class="card">
      <p><strong>${a.label}</strong>${a.isDefault && html` <span class="badge">Default</span>`}</p><p>${addressLine(a)}</p>
      <div class="actions">
        <button type="button" class="secondary" onClick=${() => setEditing(a)}>Edit</button>
        ${!a.isDefault && html`<button type="button" class="secondary" onClick=${() => makeDefault(a)}>Make default</button>`}
        <button type="button" class="link danger" onClick=${() => remove(a)} aria-label=${`Delete ${a.label}`}>Delete</button>
      </div></li>`)}</ul>
    ${editing
      ? html`<${AddressForm} key=${editing.id || 'new'} initial=${editing} onDone=${done} onCancel=${() => setEditing(null)} />`
      : html`<button type="button" onClick=${() => setEditing({})}>Add an address</button>`}
  </section>`;
}

function ChangePassword() {
  const [values, bind, setValues] = useForm({ currentPassword: '', newPassword: '' });
  const [done, setDone] = useState(false);
  const action = useAction();
  const change = action.submit(async () => {
    await auth.changePassword(values.currentPassword, values.newPassword);
    setValues({ currentPassword: '', newPassword: '' });
    setDone(true);
  });
  return html`<form onSubmit=${change} aria-labelledby="password-title">
    <h3 id="password-title">Password</h3>
    <${Field} label="Current password" type="password" autocomplete="current-password" required
      ...${bind('currentPassword')} error=${action.error} />
    <${Field} label="New password" type="password" autocomplete="new-password" required hint=${PASSWORD_RULES}
      ...${bind('newPassword')} error=${action.error} />
    <${ErrorMessage} error=${action.error} />
    ${done && html`<${Notice}>Password changed; your other sessions were signed out.<//>`}
    <button type="submit" disabled=${action.busy}>Change password</button>
  </form>`;
}

/** The otpauth:// URI as a QR code image (drawn in the browser: the secret never leaves it). */
function QrCode({ text }) {
  const code = qrcode(0, 'M');
  code.addData(text);
  code.make();
  return html`<img class="qr" src=${code.createDataURL(5, 8)} width="200" height="200"
    alt="QR code for your authenticator app (the secret is also written below)" />`;
}

function TwoFactor({ user }) {
  const [setup, setSetup] = useState(null);
  const [codes, setCodes] = useState(null);
  const [otp, setOtp] = useState('');
  const action = useAction();
  const refreshUser = () => auth.me();
  const start = () => action.run(async () => setSetup(await auth.mfaSetup()));
  const enable = action.submit(async () => {
    const result = await auth.mfaEnable(otp.trim());
    setCodes(result.recoveryCodes);
    setSetup(null);
    setOtp('');
    await refreshUser();
  });
  const disable = action.submit(async () => {
    await auth.mfaDisable(otp.trim());
    setOtp('');
    setCodes(null);
    await refreshUser();
  });
  const codeField = (hint) => html`<${Field} label="Code" name="otp" inputmode="numeric" autocomplete="one-time-code"
    required value=${otp} onInput=${(e) => setOtp(e.currentTarget.value)} hint=${hint} error=${action.error} />`;
  return html`<section aria-labelledby="mfa-title">
    <h3 id="mfa-title">Two-factor authentication</h3>
    <${ErrorMessage} error=${action.error} />
    ${codes && html`<${Notice}><p>Two-factor authentication is on. Keep these recovery codes somewhere safe; each works once
      if you lose your device:</p><ul class="codes">${codes.map((c) => html`<li key=${c}><code>${c}</code></li>`)}</ul><//>`}
    ${user.mfaEnabled && !codes && html`<p>On. To turn it off, give a code from your app or a recovery code.</p>`}
    ${user.mfaEnabled && html`<form onSubmit=${disable}>${codeField('A 6-digit code or a recovery code.')}
      <button type="submit" class="secondary" disabled=${action.busy}>Turn off</button></form>`}
    ${!user.mfaEnabled && !setup && html`<p>Off. Protect your account with an authenticator app.</p>
      <button type="button" onClick=${start} disabled=${action.busy}>Set up two-factor authentication</button>`}
    ${!user.mfaEnabled && setup && html`<div class="mfa-setup">
      <p>Scan this code with your authenticator app, then enter the 6-digit code it shows.</p>
      <${QrCode} text=${setup.otpauthUri} />
      <p>Or type this key: <code data-testid="mfa-secret">${setup.secret}</code></p>
      <form onSubmit=${enable}>${codeField('The code changes every 30 seconds.')}
        <button type="submit" disabled=${action.busy}>Turn on</button></form></div>`}
  </section>`;
}

function Sessions() {
  const sessions = useLoad(() => auth.sessions().then((r) => r.items), []);
  const action = useAction();
  const revoke = (s) => action.run(async () => {
    await auth.revokeSession(s.id);
    if (s.current) {
      await auth.logout().catch(() => {});
      navigate('/login');
      return;
    }
    sessions.reload();
  });
  const revokeAll = () => action.run(async () => {
    await auth.revokeAllSessions();
    await auth.logout().catch(() => {});
    navigate('/login');
  });
  return html`<section aria-labelledby="sessions-title">
    <h3 id="sessions-title">Where you are signed in</h3>
    ${sessions.loading && html`<${Loading} />`}
    <${ErrorMessage} error=${sessions.error || action.error} />
    <ul class="plain">${(sessions.value || []).map((s) => html`<li key=${s.id} class="card session">
      <p><strong>${s.userAgent || 'Unknown device'}</strong>${s.current && html` <span class="badge">This device</span>`}</p>
      <p class="muted">${s.ip} · signed in ${when(s.createdAt)} · last used ${when(s.lastUsedAt)}</p>
      <button type="button" class="secondary" onClick=${() => revoke(s)}>Sign out this session</button></li>`)}</ul>
    <button type="button" class="secondary danger" onClick=${revokeAll}>Sign out everywhere</button>
  </section>`;
}

function Wishlist() {
  const items = useLoad(() => catalog.wishlist().then((r) => r.items), []);
  return html`<section aria-labelledby="wishlist-title"><h2 id="wishlist-title">Wishlist</h2>
    ${items.loading && html`<${Loading} />`}<${ErrorMessage} error=${items.error} />
    ${items.value && items.value.length === 0 && html`<${Empty}><p>Nothing saved yet.</p><//>`}
    <ul class="grid">${(items.value || []).map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul></section>`;
}

export function AccountPage({ params, user, where }) {
  const section = params.section || '';
  const body = {
    '': html`<${Profile} user=${user} where=${where} key=${user.id} />`,
    addresses: html`<${Addresses} />`,
    security: html`<section><h2>Security</h2><${ChangePassword} /><${TwoFactor} user=${user} /><${Sessions} /></section>`,
    wishlist: html`<${Wishlist} />`,
  }[section];
  return html`<div class="account">
    <h1>Your account</h1>
    <nav class="tabs" aria-label="Account sections">${SECTIONS.map(([path, label]) => html`<a key=${path}
      href=${path ? `/account/${path}` : '/account'} aria-current=${section === path ? 'page' : undefined}>${label}</a>`)}</nav>
    ${body || html`<p>No such section.</p>`}
  </div>`;
}
