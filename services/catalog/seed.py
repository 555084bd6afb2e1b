"""Demo catalog for local runs (SHOP_SEED_DEMO_DATA=true): categories and products that read like
a real shop. Idempotent: categories are keyed by slug and products by SKU, so seeding twice (or two
replicas seeding at once) never duplicates anything and never overwrites later edits."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.catalog.domain import listing as listing_rules
from services.catalog.domain import products as product_rules
from services.catalog.models import Category, Product
from shop.lib.db import Database, utcnow

IMAGE_BASE = "https://images.shop.example/products"
_ID_NAMESPACE = uuid.UUID("6f1c2a52-1f0e-4d8a-9a57-3c1de0c2b001")

# (slug, name, parent slug) — parents before children.
CATEGORIES: list[tuple[str, str, str | None]] = [
    ("electronics", "Electronics", None),
    ("audio", "Audio", "electronics"),
    ("computer-accessories", "Computer Accessories", "electronics"),
    ("home-kitchen", "Home & Kitchen", None),
    ("kitchen", "Kitchen", "home-kitchen"),
    ("home-decor", "Home Decor", "home-kitchen"),
    ("sports-outdoors", "Sports & Outdoors", None),
    ("camping", "Camping", "sports-outdoors"),
    ("books", "Books", None),
]

# (sku, name, description, price, compare-at price or None, category, brand, stock)
PRODUCTS: list[tuple[str, str, str, int, int | None, str, str, int]] = [
    (
        "AUD-NC700",
        "Aurora NC700 Wireless Headphones",
        "Over-ear Bluetooth headphones with adaptive noise cancelling, 30-hour battery and a fold-flat case.",
        24900,
        29900,
        "audio",
        "Aurora",
        40,
    ),
    (
        "AUD-BUDS2",
        "Aurora Buds 2 True Wireless Earbuds",
        "Compact earbuds with three silicone tip sizes, IPX4 sweat resistance and wireless charging.",
        12900,
        None,
        "audio",
        "Aurora",
        75,
    ),
    (
        "AUD-SPK-MINI",
        "Pebble Mini Bluetooth Speaker",
        "A palm-sized waterproof speaker with surprisingly deep bass and 12 hours of playback.",
        3999,
        4999,
        "audio",
        "Pebble",
        120,
    ),
    (
        "AUD-TT-CLASSIC",
        "Groove Classic Turntable",
        "Belt-drive turntable with a built-in phono preamp, walnut plinth and USB output for digitising vinyl.",
        18900,
        None,
        "audio",
        "Groove",
        15,
    ),
    (
        "CMP-KB-MX",
        "Keystone Mechanical Keyboard",
        "Tenkeyless keyboard with hot-swappable tactile switches, PBT keycaps and a detachable USB-C cable.",
        10900,
        None,
        "computer-accessories",
        "Keystone",
        60,
    ),
    (
        "CMP-MS-ERGO",
        "Keystone Ergonomic Wireless Mouse",
        "A vertical mouse that keeps your wrist in a natural handshake position; silent clicks, 70-day battery.",
        5900,
        6900,
        "computer-accessories",
        "Keystone",
        90,
    ),
    (
        "CMP-HUB-7",
        "Portline 7-in-1 USB-C Hub",
        "HDMI 4K output, two USB-A ports, SD and microSD readers and 100 W pass-through charging.",
        4499,
        None,
        "computer-accessories",
        "Portline",
        150,
    ),
    (
        "CMP-STAND-AL",
        "Portline Aluminium Laptop Stand",
        "Raises your screen to eye level; folds flat for travel and fits laptops from 11 to 17 inches.",
        3499,
        None,
        "computer-accessories",
        "Portline",
        80,
    ),
    (
        "KIT-CHEF-8",
        "Hanzo 8-inch Chef's Knife",
        "Forged high-carbon stainless steel with a full tang and a balanced pakkawood handle.",
        8900,
        11900,
        "kitchen",
        "Hanzo",
        35,
    ),
    (
        "KIT-FP-CI12",
        "Ironworks 12-inch Cast Iron Skillet",
        "Pre-seasoned cast iron that goes from stovetop to oven to campfire; lasts for generations.",
        3900,
        None,
        "kitchen",
        "Ironworks",
        70,
    ),
    (
        "KIT-POUR-OVER",
        "Brewhaus Pour-Over Coffee Set",
        "Borosilicate glass carafe, stainless steel filter and a gooseneck kettle for a clean, bright cup.",
        5400,
        None,
        "kitchen",
        "Brewhaus",
        45,
    ),
    (
        "KIT-GRINDER",
        "Brewhaus Burr Coffee Grinder",
        "Conical steel burrs with 40 grind settings from espresso fine to French press coarse.",
        12900,
        14900,
        "kitchen",
        "Brewhaus",
        25,
    ),
    (
        "KIT-BOARD-OAK",
        "Oakline End-Grain Cutting Board",
        "Solid oak end-grain board that is gentle on knife edges; juice groove on one side.",
        6500,
        None,
        "kitchen",
        "Oakline",
        30,
    ),
    (
        "DEC-LAMP-ARC",
        "Lumen Arc Floor Lamp",
        "Brushed brass arc lamp with a linen shade and a marble base; takes any E27 bulb.",
        15900,
        18900,
        "home-decor",
        "Lumen",
        12,
    ),
    (
        "DEC-THROW-WOOL",
        "Highland Wool Throw Blanket",
        "Soft lambswool throw woven in Scotland, 130 x 180 cm, in a classic herringbone pattern.",
        8900,
        None,
        "home-decor",
        "Highland",
        40,
    ),
    (
        "DEC-PLANTER-3",
        "Terra Ceramic Planter Set of 3",
        "Matte glazed planters with drainage holes and bamboo saucers, in three nesting sizes.",
        4200,
        None,
        "home-decor",
        "Terra",
        55,
    ),
    (
        "CMP-TENT-2P",
        "Summit 2-Person Backpacking Tent",
        "Freestanding three-season tent weighing 1.6 kg, with two doors, two vestibules and a full rainfly.",
        27900,
        32900,
        "camping",
        "Summit",
        18,
    ),
    (
        "CMP-BAG-0C",
        "Summit Down Sleeping Bag 0 °C",
        "650-fill responsibly sourced down, a draft collar and a compression sack included.",
        21900,
        None,
        "camping",
        "Summit",
        22,
    ),
    (
        "CMP-STOVE-TI",
        "Ember Titanium Camp Stove",
        "Ultralight canister stove that boils a litre of water in about three and a half minutes.",
        4900,
        None,
        "camping",
        "Ember",
        65,
    ),
    (
        "CMP-LANTERN",
        "Ember Rechargeable LED Lantern",
        "400 lumens, dimmable, USB-C rechargeable and able to charge your phone in a pinch.",
        2900,
        3500,
        "camping",
        "Ember",
        100,
    ),
    (
        "SPO-BOTTLE-1L",
        "Glacier Insulated Water Bottle 1 L",
        "Double-wall vacuum insulated stainless steel: cold for 24 hours, hot for 12.",
        2800,
        None,
        "sports-outdoors",
        "Glacier",
        200,
    ),
    (
        "SPO-YOGA-MAT",
        "Flowform Yoga Mat 6 mm",
        "Natural rubber mat with a grippy polyurethane top layer and alignment lines.",
        7900,
        9900,
        "sports-outdoors",
        "Flowform",
        50,
    ),
    (
        "BOK-COOK-SEASONS",
        "Cooking Through the Seasons",
        "A hardcover cookbook of 120 vegetable-forward recipes organised by what is fresh at the market.",
        3200,
        None,
        "books",
        "Larder Press",
        80,
    ),
    (
        "BOK-TRAILS",
        "Trails of the Northern Ranges",
        "A field guide to 60 day hikes and overnight routes, with maps, elevation profiles and tips.",
        2400,
        None,
        "books",
        "Larder Press",
        60,
    ),
    (
        "BOK-SOUND",
        "The Science of Sound",
        "An illustrated introduction to acoustics, from how speakers work to why concert halls sound warm.",
        500,
        None,
        "books",
        "Fathom Books",
        45,
    ),
    (
        "AUD-STUDIO-MON",
        "Groove Studio Monitor Speakers (pair)",
        "Active bookshelf monitors with 5-inch woofers, silk-dome tweeters and balanced XLR inputs.",
        50000,
        None,
        "audio",
        "Groove",
        8,
    ),
]


def product_id_for(sku: str) -> str:
    """Stable ids so a re-seed (or another replica) refers to the same products."""
    return str(uuid.uuid5(_ID_NAMESPACE, sku))


async def seed_demo_data(db: Database) -> int:
    """Inserts whatever of the demo catalog is missing; returns how many products it created."""
    insert = pg_insert if db.is_postgres else sqlite_insert
    now = utcnow()
    async with db.transaction() as session:
        for slug, name, parent in CATEGORIES:
            await session.execute(
                insert(Category)
                .values(slug=slug, name=name, parent_slug=parent, created_at=now)
                .on_conflict_do_nothing(index_elements=["slug"])
            )
        categories = {row.slug: row for row in (await session.execute(select(Category))).scalars()}
        before = len((await session.execute(select(Product.id))).all())
        for index, (sku, name, description, price, compare_at, category, brand, stock) in enumerate(PRODUCTS):
            words = []
            current = categories.get(category)
            while current is not None:
                words += [current.slug, current.name]
                current = categories.get(current.parent_slug) if current.parent_slug else None
            slug_part = sku.lower()
            created = now - timedelta(minutes=len(PRODUCTS) - index)
            await session.execute(
                insert(Product)
                .values(
                    id=product_id_for(sku),
                    sku=sku,
                    name=name,
                    description=description,
                    price_cents=price,
                    compare_at_price_cents=compare_at,
                    currency="USD",
                    category_slug=category,
                    brand=brand,
                    images=[f"{IMAGE_BASE}/{slug_part}-1.jpg", f"{IMAGE_BASE}/{slug_part}-2.jpg"],
                    stock=stock,
                    status=product_rules.ACTIVE,
                    seller_id=None,
                    rating_average=0.0,
                    rating_count=0,
                    search_text=listing_rules.search_text(brand, words),
                    create_request_id=None,
                    created_at=created,
                    updated_at=created,
                )
                .on_conflict_do_nothing()
            )
        after = len((await session.execute(select(Product.id))).all())
    return after - before
