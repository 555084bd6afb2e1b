"""The catalog's rules, by concern. Pure functions (no grpc, no fastapi, no I/O): the use cases
(products.py, stock.py, reviews.py, wishlist.py) read the rows, ask these rules, then write. Field
names in errors are the camelCase REST names.

- `inputs.py`: what a request may say: ids, product fields (SKU, text, prices, currency, images,
  stock, status), categories, reviews
- `products.py`: a product's statuses; who may see and change it (visibility, ownership, the
  If-Match version, archiving twice); who owns a new product; the wishlist's size
- `listing.py`: the listing's query (search words, price range, sorts) and the category tree
  (subcategories, rolled-up counts, the words a product is found by)
- `stock.py`: manual stock adjustments, stock lines and reservation ids, and the reservation
  protocol (what each status allows, why lines could not be taken)
"""
