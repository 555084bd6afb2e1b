// Admin: users (search by email or name, filter by role and status), role changes and suspension.

import { users } from '../api.js';
import { Empty, ErrorMessage, Field, Loading, html, navigate, useAction, useLoad, useState, when } from '../ui.js';

const ROLES = ['CUSTOMER', 'SELLER', 'ADMIN'];

function UserRow({ user, self }) {
  const [current, setCurrent] = useState(user);
  const [role, setRole] = useState(user.role);
  const action = useAction();
  const update = (fields) => action.run(async () => setCurrent(await users.update(user.id, fields)));
  const suspended = current.status === 'SUSPENDED';
  return html`<tr data-user-id=${user.id}>
    <td>${current.firstName} ${current.lastName}<br /><small class="muted">${current.email}</small></td>
    <td><form class="inline-form" onSubmit=${(e) => { e.preventDefault(); update({ role }); }}>
      <${Field} label=${`Role of ${current.email}`} name="role" value=${role} onInput=${(e) => setRole(e.currentTarget.value)}
        disabled=${self}>${ROLES.map((r) => html`<option key=${r} value=${r}>${r}</option>`)}<//>
      <button type="submit" class="secondary" disabled=${self || action.busy || role === current.role}>Save role</button></form></td>
    <td>${current.status}</td>
    <td>${when(current.createdAt)}</td>
    <td>${!self && current.status !== 'DEACTIVATED' && html`<button type="button" class=${suspended ? 'secondary' : 'secondary danger'}
      disabled=${action.busy} onClick=${() => update({ status: suspended ? 'ACTIVE' : 'SUSPENDED' })}>
      ${suspended ? 'Reactivate' : 'Suspend'}</button>`}
      <${ErrorMessage} error=${action.error} /></td>
  </tr>`;
}

export function UsersPage({ where, user: me }) {
  const filters = { q: where.query.get('q') || '', role: where.query.get('role') || '', status: where.query.get('status') || '' };
  const [form, setForm] = useState(filters);
  const [pages, setPages] = useState([]);
  const first = useLoad(() => users.list({ ...filters, pageSize: 25 }), [where.query.toString()]);
  const action = useAction();
  const all = first.value ? [first.value, ...pages] : [];
  const last = all[all.length - 1];
  const items = all.flatMap((p) => p.items);
  const more = () => action.run(async () => {
    setPages([...pages, await users.list({ ...filters, pageSize: 25, pageToken: last.page.nextPageToken })]);
  });
  const apply = (event) => {
    event.preventDefault();
    setPages([]);
    const search = new URLSearchParams(Object.entries(form).filter(([, v]) => v));
    navigate(`/admin/users${search.toString() ? `?${search}` : ''}`);
  };
  const set = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });
  return html`<section aria-labelledby="users-title">
    <h1 id="users-title">Users</h1>
    <form class="inline-form" role="search" onSubmit=${apply}>
      <${Field} label="Email or name" type="search" name="q" value=${form.q} onInput=${set('q')} />
      <${Field} label="Role" name="role" value=${form.role} onInput=${set('role')}>
        <option value="">Any</option>${ROLES.map((r) => html`<option key=${r} value=${r}>${r}</option>`)}<//>
      <${Field} label="Status" name="status" value=${form.status} onInput=${set('status')}>
        <option value="">Any</option><option value="ACTIVE">ACTIVE</option><option value="SUSPENDED">SUSPENDED</option>
        <option value="DEACTIVATED">DEACTIVATED</option><//>
      <button type="submit">Find users</button>
    </form>
    ${first.loading && html`<${Loading} what="Loading users…" />`}
    <${ErrorMessage} error=${first.error || action.error} />
    ${first.value && html`<p class="muted">${first.value.page.totalSize} users</p>`}
    ${first.value && items.length === 0 && html`<${Empty}><p>No users match.</p><//>`}
    ${items.length > 0 && html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Joined</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${items.map((u) => html`<${UserRow} key=${u.id} user=${u} self=${u.id === me.id} />`)}</tbody>
    </table></div>`}
    ${last && last.page.nextPageToken && html`<button type="button" class="secondary" onClick=${more}>Show more</button>`}
  </section>`;
}
