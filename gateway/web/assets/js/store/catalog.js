// Browsing: the product list (search, category, brand, price and stock filters, sort, "more")
// and the product page (images, add to cart, wishlist, reviews, related products).

import { cart, catalog } from '../api.js';
import {
  Empty, ErrorMessage, Field, Loading, Notice, ProductImage, Stars, html, money, navigate, useAction, useEffect,
  useForm, useLoad, useState, when,
} from '../ui.js';

const SORTS = [
  ['', 'Best match / newest'], ['newest', 'Newest'], ['price', 'Price: low to high'], ['-price', 'Price: high to low'],
  ['rating', 'Rating'], ['name', 'Name'],
];

const cents = (text) => (text === '' || text === null || text === undefined ? undefined : Math.round(Number(text) * 100));
const dollars = (value) => (value ? String(Number(value) / 100) : '');

function filtersFrom(query) {
  return {
    q: query.get('q') || '',
    category: query.get('category') || '',
    brand: query.get('brand') || '',
    min: dollars(query.get('minPriceCents')),
    max: dollars(query.get('maxPriceCents')),
    inStock: query.get('inStock') === 'true',
    sort: query.get('sort') || '',
  };
}

function toQuery(values) {
  const search = new URLSearchParams();
  const set = (key, value) => value !== undefined && value !== '' && value !== false && search.set(key, String(value));
  set('q', values.q.trim());
  set('category', values.category);
  set('brand', values.brand.trim());
  set('minPriceCents', cents(values.min));
  set('maxPriceCents', cents(values.max));
  set('inStock', values.inStock ? 'true' : '');
  set('sort', values.sort);
  const text = search.toString();
  return text ? `/products?${text}` : '/products';
}

export function ProductCard({ product }) {
  return html`<li class="card product-card" data-product-id=${product.id}>
    <a href=${`/products/${product.id}`} class="card-link">
      <${ProductImage} product=${product} />
      <h3>${product.name}</h3>
    </a>
    <p class="price">${money(product.priceCents, product.currency)}
      ${product.compareAtPriceCents && html` <s>${money(product.compareAtPriceCents, product.currency)}</s>`}</p>
    <${Stars} rating=${product.rating} />
    ${product.stock === 0 && html`<p class="muted">Out of stock</p>`}
  </li>`;
}

function Filters({ where, categories }) {
  const [values, bind, setValues] = useForm(filtersFrom(where.query));
  useEffect(() => setValues(filtersFrom(where.query)), [where.query.toString()]);
  const apply = (event) => {
    event.preventDefault();
    navigate(toQuery(values));
  };
  const sortNow = (event) => navigate(toQuery({ ...values, sort: event.currentTarget.value }));
  return html`<form class="filters" onSubmit=${apply} aria-label="Filter products">
    <${Field} label="Search" type="search" ...${bind('q')} />
    <${Field} label="Category" ...${bind('category')}>
      <option value="">All categories</option>
      ${(categories || []).map((c) => html`<option key=${c.slug} value=${c.slug}>
        ${c.parentSlug ? '— ' : ''}${c.name} (${c.productCount})</option>`)}
    <//>
    <${Field} label="Brand" ...${bind('brand')} />
    <div class="row">
      <${Field} label="Min price" type="number" min="0" step="0.01" inputmode="decimal" ...${bind('min')} />
      <${Field} label="Max price" type="number" min="0" step="0.01" inputmode="decimal" ...${bind('max')} />
    </div>
    <${Field} label="In stock only" type="checkbox" checked=${values.inStock} ...${bind('inStock')} />
    <${Field} label="Sort by" name="sort" value=${values.sort} onInput=${sortNow}>
      ${SORTS.map(([value, label]) => html`<option key=${value} value=${value}>${label}</option>`)}
    <//>
    <div class="actions">
      <button type="submit">Apply filters</button>
      <a href="/products" class="button secondary">Clear</a>
    </div>
  </form>`;
}

export function CatalogPage({ where }) {
  const categories = useLoad(() => catalog.categories().then((r) => r.items), []);
  const key = where.query.toString();
  const params = () => {
    const q = where.query;
    return {
      q: q.get('q'), category: q.get('category'), brand: q.get('brand'), minPriceCents: q.get('minPriceCents'),
      maxPriceCents: q.get('maxPriceCents'), inStock: q.get('inStock') === 'true' ? 'true' : undefined,
      sort: q.get('sort'), pageSize: 12,
    };
  };
  const first = useLoad(() => catalog.products(params()), [key]);
  const [more, setMore] = useState({ items: [], token: null, busy: false, error: null });
  useEffect(() => setMore({ items: [], token: null, busy: false, error: null }), [key]);
  const token = more.token || (first.value && first.value.page.nextPageToken);
  const loadMore = async () => {
    setMore({ ...more, busy: true, error: null });
    try {
      const next = await catalog.products({ ...params(), pageToken: token });
      setMore({ items: [...more.items, ...next.items], token: next.page.nextPageToken || '', busy: false, error: null });
    } catch (error) {
      setMore({ ...more, busy: false, error });
    }
  };
  const q = where.query.get('q');
  const category = (categories.value || []).find((c) => c.slug === where.query.get('category'));
  const title = q ? `Results for “${q}”` : category ? category.name : 'All products';
  const items = first.value ? [...first.value.items, ...more.items] : [];
  const hasMore = first.value && (more.token === null ? first.value.page.nextPageToken : more.token);
  return html`<div class="catalog">
    <aside><${Filters} where=${where} categories=${categories.value} /></aside>
    <section aria-labelledby="catalog-title">
      <h1 id="catalog-title">${title}</h1>
      ${first.loading && html`<${Loading} what="Loading products…" />`}
      <${ErrorMessage} error=${first.error || categories.error} />
      ${first.value && html`<p class="muted" role="status">${first.value.page.totalSize} products</p>`}
      ${first.value && items.length === 0 && html`<${Empty}>
        <p>No products match. Try other words or <a href="/products">clear the filters</a>.</p><//>`}
      <ul class="grid" aria-label="Products">${items.map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul>
      <${ErrorMessage} error=${more.error} />
      ${hasMore && html`<button type="button" class="secondary" onClick=${loadMore} disabled=${more.busy}>
        ${more.busy ? 'Loading…' : 'Show more'}</button>`}
    </section>
  </div>`;
}

function Gallery({ product }) {
  const [index, setIndex] = useState(0);
  const images = product.images || [];
  return html`<div class="gallery">
    <${ProductImage} product=${product} src=${images[index]} size="large" key=${index} />
    ${images.length > 1 && html`<div class="thumbs" role="group" aria-label="Images">
      ${images.map((url, i) => html`<button type="button" key=${url} aria-label=${`Image ${i + 1}`}
        aria-pressed=${i === index} onClick=${() => setIndex(i)}>
        <${ProductImage} product=${product} src=${url} size="thumb" /></button>`)}</div>`}
  </div>`;
}

function AddToCart({ product }) {
  const [quantity, setQuantity] = useState(1);
  const [added, setAdded] = useState(null);
  const action = useAction();
  const add = action.submit(async () => {
    const result = await cart.add(product.id, Number(quantity));
    setAdded(result);
  });
  if (product.stock === 0) return html`<p class="muted">Out of stock</p>`;
  return html`<form class="add-to-cart" onSubmit=${add}>
    <${Field} label="Quantity" type="number" min="1" max=${Math.min(100, product.stock)} value=${quantity}
      onInput=${(e) => setQuantity(e.currentTarget.value)} />
    <button type="submit" disabled=${action.busy}>${action.busy ? 'Adding…' : 'Add to cart'}</button>
    <${ErrorMessage} error=${action.error} />
    ${added && html`<${Notice}>Added. Your cart has ${added.itemCount} items. <a href="/cart">View cart</a><//>`}
  </form>`;
}

function Wishlist({ product, user }) {
  const action = useAction();
  const [saved, setSaved] = useState(null);
  if (!user) return null;
  const save = () => action.run(async () => {
    await catalog.addToWishlist(product.id);
    setSaved(true);
  });
  return html`<p>${saved
    ? html`<span role="status">Saved to your wishlist.</span>`
    : html`<button type="button" class="secondary" onClick=${save} disabled=${action.busy}>Save to wishlist</button>`}
    <${ErrorMessage} error=${action.error} /></p>`;
}

function ReviewForm({ product, user, onAdded }) {
  const [values, bind, setValues] = useForm({ rating: '5', title: '', body: '' });
  const action = useAction();
  if (!user) return html`<p><a href=${`/login?next=/products/${product.id}`}>Sign in</a> to write a review.</p>`;
  const send = action.submit(async () => {
    await catalog.createReview(product.id, { rating: Number(values.rating), title: values.title, body: values.body });
    setValues({ rating: '5', title: '', body: '' });
    onAdded();
  });
  return html`<form onSubmit=${send} aria-label="Write a review">
    <h3>Write a review</h3>
    <${Field} label="Rating" ...${bind('rating')} error=${action.error}>
      ${[5, 4, 3, 2, 1].map((n) => html`<option key=${n} value=${n}>${n} ★</option>`)}
    <//>
    <${Field} label="Title" maxlength="120" ...${bind('title')} error=${action.error} />
    <${Field} label="Review" type="textarea" maxlength="5000" ...${bind('body')} error=${action.error} />
    <${ErrorMessage} error=${action.error} />
    <button type="submit" disabled=${action.busy}>Post review</button>
  </form>`;
}

function Reviews({ product, user, onChange }) {
  const reviews = useLoad(() => catalog.reviews(product.id, { pageSize: 10 }), [product.id]);
  return html`<section aria-labelledby="reviews-title" class="reviews">
    <h2 id="reviews-title">Reviews</h2>
    ${reviews.loading && html`<${Loading} what="Loading reviews…" />`}
    <${ErrorMessage} error=${reviews.error} />
    ${reviews.value && reviews.value.items.length === 0 && html`<${Empty}><p>No reviews yet.</p><//>`}
    <ul class="plain">${reviews.value && reviews.value.items.map((r) => html`<li key=${r.id} class="review">
      <p><span aria-label=${`${r.rating} out of 5`}>${'★'.repeat(r.rating)}${'☆'.repeat(5 - r.rating)}</span>
        <strong> ${r.title}</strong> ${r.verifiedPurchase && html`<span class="badge">Verified purchase</span>`}</p>
      <p>${r.body}</p><small class="muted">${when(r.createdAt)}</small></li>`)}</ul>
    <${ReviewForm} product=${product} user=${user} onAdded=${() => { reviews.reload(); onChange(); }} />
  </section>`;
}

function Related({ product }) {
  const related = useLoad(
    () => catalog.products({ category: product.categorySlug, pageSize: 5 }).then((r) => r.items.filter((p) => p.id !== product.id).slice(0, 4)),
    [product.id],
  );
  if (!related.value || related.value.length === 0) return null;
  return html`<section aria-labelledby="related-title"><h2 id="related-title">Related products</h2>
    <ul class="grid">${related.value.map((p) => html`<${ProductCard} key=${p.id} product=${p} />`)}</ul></section>`;
}

export function ProductPage({ params, user }) {
  const product = useLoad(() => catalog.product(params.id), [params.id]);
  if (product.loading && !product.value) return html`<${Loading} what="Loading the product…" />`;
  if (product.error) return html`<section><h1>Product unavailable</h1><${ErrorMessage} error=${product.error} />
    <p><a href="/products">Back to all products</a></p></section>`;
  const p = product.value;
  return html`<article class="product" data-product-id=${p.id}>
    <nav class="crumbs" aria-label="Breadcrumb"><a href="/products">Products</a> ›
      <a href=${`/products?category=${p.categorySlug}`}>${p.categorySlug}</a></nav>
    <div class="product-main">
      <${Gallery} product=${p} />
      <div>
        <h1>${p.name}</h1>
        ${p.brand && html`<p class="muted">${p.brand}</p>`}
        <p class="price large">${money(p.priceCents, p.currency)}
          ${p.compareAtPriceCents && html` <s>${money(p.compareAtPriceCents, p.currency)}</s>`}</p>
        <${Stars} rating=${p.rating} />
        <p>${p.stock > 0 ? `${p.stock} in stock` : ''}</p>
        <${AddToCart} product=${p} />
        <${Wishlist} product=${p} user=${user} />
        <p class="description">${p.description}</p>
        <small class="muted">SKU ${p.sku}</small>
      </div>
    </div>
    <${Reviews} product=${p} user=${user} onChange=${product.reload} />
    <${Related} product=${p} />
  </article>`;
}
