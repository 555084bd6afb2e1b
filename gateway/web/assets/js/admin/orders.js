// Admin: every order (status filter), one order's fulfilment (status, carrier and tracking),
// cancellation, refunds and payments.

import { newIdempotencyKey, orders } from '../api.js';
import {
  Empty, ErrorMessage, Field, Loading, Notice, StatusBadge, html, money, navigate, useAction, useForm, useLoad,
  useState, when,
} from '../ui.js';
import { OrderSummary } from '../store/orders.js';

const STATUSES = ['PENDING', 'PAID', 'PAYMENT_FAILED', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'REFUNDED'];
const NEXT = { PAID: 'PROCESSING', PROCESSING: 'SHIPPED', SHIPPED: 'DELIVERED' };

export function OrdersAdminPage({ where }) {
  const status = where.query.get('status') || '';
  const userId = where.query.get('userId') || '';
  const [pages, setPages] = useState([]);
  const first = useLoad(() => orders.list({ status, userId, pageSize: 25 }), [status, userId]);
  const action = useAction();
  const all = first.value ? [first.value, ...pages] : [];
  const last = all[all.length - 1];
  const items = all.flatMap((p) => p.items);
  const more = () => action.run(async () => {
    setPages([...pages, await orders.list({ status, userId, pageSize: 25, pageToken: last.page.nextPageToken })]);
  });
  const filter = (event) => {
    setPages([]);
    const value = event.currentTarget.value;
    navigate(`/admin/orders?${new URLSearchParams({ ...(value ? { status: value } : {}), ...(userId ? { userId } : {}) })}`);
  };
  return html`<section aria-labelledby="orders-title">
    <h1 id="orders-title">Orders</h1>
    <div class="inline-form"><${Field} label="Status" name="status" value=${status} onInput=${filter}>
      <option value="">Every status</option>
      ${STATUSES.map((s) => html`<option key=${s} value=${s}>${s}</option>`)}
    <//>${userId && html`<p>One customer's orders · <a href="/admin/orders">all customers</a></p>`}</div>
    ${first.loading && html`<${Loading} what="Loading orders…" />`}
    <${ErrorMessage} error=${first.error || action.error} />
    ${first.value && items.length === 0 && html`<${Empty}><p>No orders${status ? ` in status ${status}` : ''}.</p><//>`}
    ${items.length > 0 && html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">Order</th><th scope="col">Placed</th><th scope="col">Customer</th><th scope="col">Status</th>
        <th scope="col">Total</th></tr></thead>
      <tbody>${items.map((o) => html`<tr key=${o.id} data-order-id=${o.id}>
        <td><a href=${`/admin/orders/${o.id}`}>${o.number}</a></td><td>${when(o.createdAt)}</td>
        <td><a href=${`/admin/orders?userId=${o.userId}`}>${o.shippingAddress.firstName} ${o.shippingAddress.lastName}</a></td>
        <td><${StatusBadge} status=${o.status} /></td><td>${money(o.totalCents, o.currency)}</td></tr>`)}</tbody>
    </table></div>`}
    ${last && last.page.nextPageToken && html`<button type="button" class="secondary" onClick=${more}>Show more</button>`}
  </section>`;
}

function StatusForm({ order, onChanged }) {
  const next = NEXT[order.status];
  const [values, bind] = useForm({ carrier: '', trackingNumber: '' });
  const action = useAction();
  if (!next) return html`<p class="muted">No fulfilment step follows ${order.status}.</p>`;
  const move = action.submit(async () => {
    const fields = next === 'SHIPPED' ? { status: next, carrier: values.carrier.trim(), trackingNumber: values.trackingNumber.trim() } : { status: next };
    onChanged(await orders.setStatus(order.id, fields));
  });
  return html`<form onSubmit=${move} aria-labelledby="fulfil-title">
    <h2 id="fulfil-title">Fulfilment</h2>
    ${next === 'SHIPPED' && html`<div class="row">
      <${Field} label="Carrier" required ...${bind('carrier')} error=${action.error} />
      <${Field} label="Tracking number" required ...${bind('trackingNumber')} error=${action.error} /></div>`}
    <${ErrorMessage} error=${action.error} />
    <button type="submit" disabled=${action.busy} data-next-status=${next}>Mark as ${next.toLowerCase()}</button>
  </form>`;
}

function RefundForm({ order, onChanged }) {
  const [values, bind, setValues] = useForm({ amount: '', reason: '' });
  const [key, setKey] = useState(newIdempotencyKey);
  const [done, setDone] = useState(null);
  const action = useAction();
  const refund = action.submit(async () => {
    const fields = { reason: values.reason.trim(), ...(values.amount ? { amountCents: Math.round(Number(values.amount) * 100) } : {}) };
    try {
      const result = await orders.refund(order.id, fields, key);
      setDone(result.refund);
      setValues({ amount: '', reason: '' });
      onChanged(result.order);
    } finally {
      setKey(newIdempotencyKey());
    }
  });
  return html`<form onSubmit=${refund} aria-labelledby="refund-title">
    <h2 id="refund-title">Refund</h2>
    <div class="row">
      <${Field} label="Amount (empty: everything that remains)" type="number" min="0.01" step="0.01" ...${bind('amount')}
        field="amountCents" error=${action.error} />
      <${Field} label="Reason" required maxlength="500" ...${bind('reason')} error=${action.error} />
    </div>
    <${ErrorMessage} error=${action.error} />
    ${done && html`<${Notice}>Refunded ${money(done.amountCents, order.currency)}.<//>`}
    <button type="submit" class="secondary danger" disabled=${action.busy}>Refund</button>
  </form>`;
}

function Payments({ order }) {
  const payments = useLoad(() => orders.payments(order.id), [order.id, order.status]);
  if (payments.loading) return html`<${Loading} />`;
  if (payments.error) return html`<${ErrorMessage} error=${payments.error} />`;
  const { payments: list, refunds } = payments.value;
  return html`<section aria-labelledby="payments-title"><h2 id="payments-title">Payments</h2>
    ${list.length === 0 && html`<${Empty}><p>No payment recorded.</p><//>`}
    <ul class="plain">${list.map((p) => html`<li key=${p.id} class="card">${p.brand || p.method} ${p.last4 || ''} · ${p.status} ·
      captured ${money(p.capturedCents, p.currency)}, refunded ${money(p.refundedCents, p.currency)} · ${p.provider}</li>`)}</ul>
    ${refunds.length > 0 && html`<h3>Refunds</h3><ul class="plain">${refunds.map((r) => html`<li key=${r.id}>
      ${money(r.amountCents, order.currency)} · ${r.status} · ${r.reason || ''} · ${when(r.createdAt)}</li>`)}</ul>`}
  </section>`;
}

export function OrderAdminPage({ params }) {
  const loaded = useLoad(() => orders.get(params.id), [params.id]);
  const action = useAction();
  if (loaded.loading && !loaded.value) return html`<${Loading} what="Loading the order…" />`;
  if (loaded.error) return html`<section><h1>Order</h1><${ErrorMessage} error=${loaded.error} /></section>`;
  const order = loaded.value;
  const cancel = () => action.run(async () => loaded.set(await orders.cancel(order.id, 'Cancelled by the shop')));
  return html`<article aria-labelledby="order-title" data-order-id=${order.id}>
    <p><a href="/admin/orders">← Orders</a></p>
    <h1 id="order-title">Order ${order.number}</h1>
    <p>Status: <span data-testid="order-status"><${StatusBadge} status=${order.status} /></span> · placed ${when(order.createdAt)}
      · <a href=${`/admin/orders?userId=${order.userId}`}>this customer's orders</a></p>
    <div class="admin-grid">
      <div><${OrderSummary} order=${order} />
        <h2>History</h2><ol class="timeline">${order.history.map((h, i) => html`<li key=${i}><${StatusBadge} status=${h.status} />
          <span class="muted">${when(h.at)}</span>${h.note && ` · ${h.note}`}</li>`)}</ol></div>
      <div>
        <${StatusForm} key=${order.status} order=${order} onChanged=${loaded.set} />
        ${['PENDING', 'PAID', 'PROCESSING'].includes(order.status) && html`<p>
          <button type="button" class="secondary danger" onClick=${cancel} disabled=${action.busy}>Cancel the order</button></p>`}
        <${ErrorMessage} error=${action.error} />
        ${['PAID', 'PROCESSING', 'SHIPPED', 'DELIVERED'].includes(order.status) && html`<${RefundForm} order=${order} onChanged=${loaded.set} />`}
        <${Payments} order=${order} />
      </div>
    </div>
  </article>`;
}
