"""The catalog's queries, by concern. Queries only: no transaction is opened or committed here, no
permission, idempotency or protocol rule is checked (those are the use cases' and domain/'s).

- `products.py`: products and categories (lean `Query` reads; ORM writes taking a session)
- `listing.py`: the product listing's statements, one per shape of query
- `stock.py`: reservations (lean `Query` statements run in a `db.write()` transaction) and manual
  stock adjustments (ORM, taking a session)
- `reviews.py`: reviews, purchases and wishlists

Lean reads are `Query` constants (or statements) the use cases run with `db.read_one/read_all/
read_statement`, with no transaction; every other function takes the use case's session or
lean transaction.
"""
