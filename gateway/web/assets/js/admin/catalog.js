// Admin: products (list, create, edit, stock adjustments, archive) and categories.

import { catalog } from '../api.js';
import {
  Empty, ErrorMessage, Field, Loading, Notice, html, money, navigate, useAction, useForm, useLoad, useState,
} from '../ui.js';

const toCents = (text) => Math.round(Number(text) * 100);

export function ProductsPage({ where }) {
  const q = where.query.get('q') || '';
  const [search, setSearch] = useState(q);
  const [pages, setPages] = useState([]);
  const first = useLoad(() => catalog.products({ q, pageSize: 25, sort: q ? 'relevance' : 'name' }), [q]);
  const action = useAction();
  const all = first.value ? [first.value, ...pages] : [];
  const last = all[all.length - 1];
  const items = all.flatMap((p) => p.items);
  const more = () => action.run(async () => {
    setPages([...pages, await catalog.products({ q, pageSize: 25, sort: q ? 'relevance' : 'name', pageToken: last.page.nextPageToken })]);
  });
  const archive = (p) => action.run(async () => {
    if (!window.confirm(`Archive ${p.name}? It leaves the catalog; old orders keep it.`)) return;
    await catalog.archiveProduct(p.id);
    setPages([]);
    first.reload();
  });
  return html`<section aria-labelledby="products-title">
    <h1 id="products-title">Products</h1>
    <div class="actions">
      <form class="inline-form" role="search" onSubmit=${(e) => { e.preventDefault(); setPages([]); navigate(`/admin/products${search ? `?q=${encodeURIComponent(search)}` : ''}`); }}>
        <${Field} label="Search products" type="search" name="q" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} />
        <button type="submit">Search</button>
      </form>
      <a class="button" href="/admin/products/new">New product</a>
    </div>
    <p class="muted">The list shows ACTIVE products (the API lists no drafts); open a draft by its id: /admin/products/&lt;id&gt;.</p>
    ${first.loading && html`<${Loading} what="Loading products…" />`}
    <${ErrorMessage} error=${first.error || action.error} />
    ${first.value && items.length === 0 && html`<${Empty}><p>No products.</p><//>`}
    ${items.length > 0 && html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">Name</th><th scope="col">SKU</th><th scope="col">Price</th><th scope="col">Stock</th>
        <th scope="col">Status</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${items.map((p) => html`<tr key=${p.id} data-product-id=${p.id}>
        <td><a href=${`/admin/products/${p.id}`}>${p.name}</a></td><td>${p.sku}</td><td>${money(p.priceCents, p.currency)}</td>
        <td>${p.stock}</td><td>${p.status}</td>
        <td><button type="button" class="link danger" onClick=${() => archive(p)} aria-label=${`Archive ${p.name}`}>Archive</button></td>
      </tr>`)}</tbody></table></div>`}
    ${last && last.page.nextPageToken && html`<button type="button" class="secondary" onClick=${more}>Show more</button>`}
  </section>`;
}

function productValues(p) {
  return {
    sku: p ? p.sku : '', name: p ? p.name : '', description: p ? p.description : '',
    price: p ? String(p.priceCents / 100) : '', compareAt: p && p.compareAtPriceCents ? String(p.compareAtPriceCents / 100) : '',
    currency: p ? p.currency : 'USD', categorySlug: p ? p.categorySlug : '', brand: p && p.brand ? p.brand : '',
    images: p ? p.images.join('\n') : '', stock: '0', status: p ? p.status : 'ACTIVE',
  };
}

function ProductForm({ product, categories, onSaved }) {
  const [values, bind] = useForm(productValues(product));
  const action = useAction();
  const save = action.submit(async () => {
    const body = {
      sku: values.sku.trim(), name: values.name.trim(), description: values.description,
      priceCents: toCents(values.price), compareAtPriceCents: values.compareAt ? toCents(values.compareAt) : null,
      currency: values.currency.trim().toUpperCase(), categorySlug: values.categorySlug, brand: values.brand.trim() || null,
      images: values.images.split('\n').map((s) => s.trim()).filter(Boolean), status: values.status,
    };
    if (product) {
      onSaved(await catalog.updateProduct(product.id, body));
    } else {
      const { compareAtPriceCents, ...rest } = body;
      const created = await catalog.createProduct({
        ...rest, ...(compareAtPriceCents ? { compareAtPriceCents } : {}), brand: body.brand || undefined,
        stock: Number(values.stock),
      });
      onSaved(created);
    }
  });
  return html`<form onSubmit=${save} aria-label=${product ? 'Edit product' : 'New product'}>
    <div class="row">
      <${Field} label="SKU" required ...${bind('sku')} error=${action.error} />
      <${Field} label="Name" required ...${bind('name')} error=${action.error} />
    </div>
    <${Field} label="Description" type="textarea" ...${bind('description')} error=${action.error} />
    <div class="row">
      <${Field} label="Price" type="number" min="0.01" step="0.01" required ...${bind('price')} field="priceCents" error=${action.error} />
      <${Field} label="Compare-at price (optional)" type="number" min="0.01" step="0.01" ...${bind('compareAt')}
        field="compareAtPriceCents" error=${action.error} />
    </div>
    <div class="row">
      <${Field} label="Currency" maxlength="3" required ...${bind('currency')} error=${action.error} />
      <${Field} label="Category" required ...${bind('categorySlug')} error=${action.error}>
        <option value="">Choose…</option>
        ${(categories || []).map((c) => html`<option key=${c.slug} value=${c.slug}>${c.name}</option>`)}
      <//>
    </div>
    <div class="row">
      <${Field} label="Brand (optional)" ...${bind('brand')} error=${action.error} />
      <${Field} label="Status" ...${bind('status')} error=${action.error}>
        <option value="ACTIVE">Active</option><option value="DRAFT">Draft</option>
      <//>
    </div>
    <${Field} label="Image URLs (one per line, at most 10)" type="textarea" ...${bind('images')} error=${action.error} />
    ${!product && html`<${Field} label="Initial stock" type="number" min="0" required ...${bind('stock')} error=${action.error} />`}
    <${ErrorMessage} error=${action.error} />
    <button type="submit" disabled=${action.busy}>${product ? 'Save changes' : 'Create product'}</button>
  </form>`;
}

function StockForm({ product, onChanged }) {
  const [values, bind, setValues] = useForm({ delta: '', reason: '' });
  const action = useAction();
  const adjust = action.submit(async () => {
    const result = await catalog.adjustStock(product.id, Number(values.delta), values.reason.trim());
    setValues({ delta: '', reason: '' });
    onChanged(result.stock);
  });
  return html`<form onSubmit=${adjust} aria-labelledby="stock-title">
    <h2 id="stock-title">Stock: <span data-testid="stock">${product.stock}</span></h2>
    <div class="row">
      <${Field} label="Change (e.g. 10 or -2)" type="number" step="1" required ...${bind('delta')} error=${action.error} />
      <${Field} label="Reason" required maxlength="200" ...${bind('reason')} error=${action.error} />
    </div>
    <${ErrorMessage} error=${action.error} />
    <button type="submit" disabled=${action.busy}>Adjust stock</button>
  </form>`;
}

export function ProductEditPage({ params }) {
  const isNew = params.id === 'new';
  const product = useLoad(() => (isNew ? Promise.resolve(null) : catalog.product(params.id)), [params.id]);
  const categories = useLoad(() => catalog.categories().then((r) => r.items), []);
  const [saved, setSaved] = useState(false);
  if (product.loading || categories.loading) return html`<${Loading} />`;
  if (product.error) return html`<section><h1>Product</h1><${ErrorMessage} error=${product.error} /></section>`;
  const p = product.value;
  const onSaved = (updated) => {
    setSaved(true);
    if (isNew) navigate(`/admin/products/${updated.id}`, { replace: true });
    else product.set(updated);
  };
  return html`<section aria-labelledby="product-title">
    <p><a href="/admin/products">← Products</a></p>
    <h1 id="product-title">${p ? p.name : 'New product'}</h1>
    ${saved && html`<${Notice}>Saved.<//>`}
    <${ErrorMessage} error=${categories.error} />
    <div class="admin-grid">
      <${ProductForm} key=${p ? p.updatedAt : 'new'} product=${p} categories=${categories.value} onSaved=${onSaved} />
      ${p && html`<div><${StockForm} product=${p} onChanged=${(stock) => product.set({ ...p, stock })} />
        <p><a href=${`/products/${p.id}`}>View in the shop</a></p></div>`}
    </div>
  </section>`;
}

export function CategoriesPage() {
  const categories = useLoad(() => catalog.categories().then((r) => r.items), []);
  const [values, bind, setValues] = useForm({ slug: '', name: '', parentSlug: '' });
  const action = useAction();
  const create = action.submit(async () => {
    await catalog.createCategory({ slug: values.slug.trim(), name: values.name.trim(), ...(values.parentSlug ? { parentSlug: values.parentSlug } : {}) });
    setValues({ slug: '', name: '', parentSlug: '' });
    categories.reload();
  });
  return html`<section aria-labelledby="categories-title">
    <h1 id="categories-title">Categories</h1>
    ${categories.loading && html`<${Loading} />`}
    <${ErrorMessage} error=${categories.error} />
    ${categories.value && categories.value.length === 0 && html`<${Empty}><p>No categories yet.</p><//>`}
    ${categories.value && categories.value.length > 0 && html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">Name</th><th scope="col">Slug</th><th scope="col">Parent</th><th scope="col">Active products</th></tr></thead>
      <tbody>${categories.value.map((c) => html`<tr key=${c.slug}><td>${c.name}</td><td>${c.slug}</td>
        <td>${c.parentSlug || '—'}</td><td>${c.productCount}</td></tr>`)}</tbody></table></div>`}
    <h2>New category</h2>
    <form onSubmit=${create}>
      <div class="row">
        <${Field} label="Slug" required hint="lower-case words joined by hyphens, e.g. garden-tools" ...${bind('slug')} error=${action.error} />
        <${Field} label="Name" required ...${bind('name')} error=${action.error} />
      </div>
      <${Field} label="Parent (optional)" ...${bind('parentSlug')} error=${action.error}>
        <option value="">None</option>
        ${(categories.value || []).map((c) => html`<option key=${c.slug} value=${c.slug}>${c.name}</option>`)}
      <//>
      <${ErrorMessage} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Create category</button>
    </form>
  </section>`;
}
