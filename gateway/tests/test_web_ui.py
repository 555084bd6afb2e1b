"""The web UI in a real browser (Playwright driving Debian's chromium) against the real stack.

A guest browses, searches, adds to the cart, registers and finds the cart merged, verifies the
email from the link in the mail, is declined with a declined card, checks out, and watches the
order's status change live while an admin moves it to PROCESSING and SHIPPED in the admin console;
the admin console refuses a customer; MFA setup shows a QR code and turns on with a TOTP code.
Screenshots of the main pages go to var/screenshots/ (ignored by git) for a person to look at.

The browser: $SHOP_CHROMIUM, else `chromium` on PATH (Debian's package; Playwright's own browser
download cannot work here). Without it the tests skip, except under CI=true, where they fail
(.ci/run installs the package).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from services.auth.tests.helpers import link_token, totp_code, wait_for_mails

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "var" / "screenshots"
IMAGE_HOST = "images.test"
# A 1x1 PNG (a product photo stand-in served for https://images.test/...).
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
PASSWORD = "Passw0rd!x"


def chromium_path() -> str:
    path = os.environ.get("SHOP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "no chromium for the browser tests (apt-get install chromium, or set SHOP_CHROMIUM)"
    if os.environ.get("CI") == "true":
        raise RuntimeError(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("playwright is not installed")
    path = chromium_path()
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


class Browsing:
    """A browser context on the suite's gateway that records any request to another origin."""

    def __init__(self, suite, context) -> None:
        self.suite = suite
        self.context = context
        self.foreign: list[str] = []
        self.console_errors: list[str] = []

    async def page(self):
        page = await self.context.new_page()

        def on_console(message) -> None:
            if message.type == "error":
                self.console_errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        return page

    def url(self, path: str) -> str:
        return self.suite.base_url + path


@pytest_asyncio.fixture(loop_scope="session")
async def open_context(browser, suite):
    contexts = []

    async def make(viewport=DESKTOP) -> Browsing:
        context = await browser.new_context(viewport=viewport)
        browsing = Browsing(suite, context)
        origin = urlsplit(suite.base_url).netloc

        async def route(request_route):
            request = request_route.request
            host = urlsplit(request.url).netloc
            if host == IMAGE_HOST:
                await request_route.fulfill(body=PIXEL, content_type="image/png")
            elif host != origin and request.resource_type == "image":
                await request_route.abort()  # a product's image URL (data, not the UI's own code)
            elif host != origin:
                browsing.foreign.append(request_route.request.url)
                await request_route.abort()
            else:
                await request_route.continue_()

        await context.route("**/*", route)
        contexts.append(browsing)
        return browsing

    yield make
    for browsing in contexts:
        await browsing.context.close()
    for browsing in contexts:
        assert browsing.foreign == [], f"the UI asked another origin: {browsing.foreign}"


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shop(suite):
    """An admin (known password), a category and three products sharing a word only they have."""
    boss = await suite.admin()
    tag = uuid.uuid4().hex[:6]
    slug = f"ui-{tag}"
    response = await suite.http.post(
        "/api/v1/categories", json={"slug": slug, "name": f"Kitchen {tag}"}, headers=boss["headers"]
    )
    assert response.status_code == 201, response.text
    products = []
    for name, price, images in [
        (f"Zephyr{tag} kettle", 3900, [f"https://{IMAGE_HOST}/kettle-1.png", f"https://{IMAGE_HOST}/kettle-2.png"]),
        (f"Zephyr{tag} teapot", 2500, []),
        (f"Zephyr{tag} mug", 1200, ["https://unreachable.invalid/mug.png"]),
    ]:
        response = await suite.http.post(
            "/api/v1/products",
            headers=boss["headers"],
            json={
                "sku": f"UI-{uuid.uuid4().hex[:8]}",
                "name": name,
                "description": f"A {name.split()[-1]} for the UI test.",
                "priceCents": price,
                "currency": "USD",
                "categorySlug": slug,
                "brand": "Zephyr",
                "images": images,
                "stock": 50,
            },
        )
        assert response.status_code == 201, response.text
        products.append(response.json()["data"])
    return {"admin": boss, "tag": f"Zephyr{tag}", "slug": slug, "products": products}


async def sign_in_admin(page, browsing, admin) -> None:
    await page.goto(browsing.url("/admin"))
    await page.get_by_label("Email").fill(admin["email"])
    await page.get_by_label("Password").fill(admin["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Products").wait_for()


async def test_guest_to_live_order(suite, shop, open_context):
    from playwright.async_api import expect

    customer = await open_context()
    page = await customer.page()
    # Product image URLs are data: images.test is answered by the test, the unreachable one fails
    # and is drawn as a placeholder. Any other request to another origin fails the test.
    await page.goto(customer.url("/"))
    await expect(page.get_by_role("heading", name="All products")).to_be_visible()
    await shot(page, "01-storefront-home")

    # Search, then filter and sort.
    await page.get_by_role("search").get_by_label("Search products").fill(shop["tag"])
    await page.get_by_role("search").get_by_role("button", name="Search").click()
    await expect(page.get_by_role("heading", name=f"Results for “{shop['tag']}”")).to_be_visible()
    await expect(page.locator(".product-card")).to_have_count(3)
    await page.get_by_label("Sort by").select_option("price")
    await expect(page.locator(".product-card h3").first).to_have_text(f"{shop['tag']} mug")
    await page.get_by_label("Max price").fill("30")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.locator(".product-card")).to_have_count(2)
    await shot(page, "02-search-filtered")

    # The product page: images, reviews (none yet), related products; add two to the cart.
    await page.goto(customer.url(f"/products?q={shop['tag']}"))
    await page.get_by_role("link", name=f"{shop['tag']} kettle").first.click()
    await expect(page.get_by_role("heading", name=f"{shop['tag']} kettle", level=1)).to_be_visible()
    await expect(page.locator(".gallery img.image.large")).to_be_visible()
    await expect(page.get_by_role("heading", name="Reviews")).to_be_visible()
    await expect(page.get_by_text("No reviews yet.")).to_be_visible()
    await expect(page.get_by_role("heading", name="Related products")).to_be_visible()
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page.get_by_test_id("cart-count")).to_have_text("2")
    await shot(page, "03-product")

    await page.get_by_role("link", name=re.compile("^Cart")).click()
    await expect(page.get_by_role("heading", name="Your cart")).to_be_visible()
    await expect(page.get_by_test_id("cart-subtotal")).to_have_text("$78.00")
    await shot(page, "04-cart-guest")

    # Register from the cart: the guest's lines are merged into the new account's cart.
    await page.get_by_role("link", name="Sign in to check out").click()
    await page.get_by_role("link", name="Create an account").click()
    email = f"ui-{uuid.uuid4().hex[:10]}@example.com"
    await page.get_by_label("First name").fill("Ada")
    await page.get_by_label("Last name").fill("Lovelace")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
    await expect(page.get_by_test_id("cart-count")).to_have_text("2")

    # The email's verification link opens /verify-email on this site.
    [mail] = await wait_for_mails(suite.mail_dir, email, "Verify your email")
    token = link_token(mail, "/verify-email")
    verify = await customer.page()
    await verify.goto(customer.url(f"/verify-email?token={token}"))
    await expect(verify.get_by_text("your email address is verified")).to_be_visible()
    await shot(verify, "05-verify-email")
    await verify.close()

    # Checkout with a new address and a declined card: the API's message is shown in words.
    await page.get_by_label("Label (e.g. Home)").fill("Home")
    await page.get_by_label("First name").fill("Ada")
    await page.get_by_label("Last name").fill("Lovelace")
    await page.get_by_label("Address line 1").fill("12 Analytical Row")
    await page.get_by_label("City").fill("London")
    await page.get_by_label("Postal code").fill("N1 9GU")
    await page.get_by_label("Country").select_option("GB")
    await page.get_by_label("Card number").fill("4000 0000 0000 0002")
    await page.get_by_role("button", name="Place order").click()
    alert = page.locator(".error[data-code=PAYMENT_DECLINED]")
    await expect(alert).to_be_visible()
    assert "{" not in await alert.inner_text()
    await shot(page, "06-checkout-declined")

    # The address was saved on the first try; the second uses it, with a card that succeeds.
    await expect(page.get_by_label(re.compile("^Home"))).to_be_checked()
    await page.get_by_label("Card number").fill("4242 4242 4242 4242")
    await page.get_by_role("button", name="Place order").click()
    await expect(page.get_by_role("heading", name=re.compile(r"^Order ORD-"))).to_be_visible()
    status = page.get_by_test_id("order-status")
    await expect(status).to_have_text("Paid")
    await expect(page.get_by_text("live updates on")).to_be_visible()
    await expect(page.get_by_test_id("cart-count")).to_have_text("0")
    order_id = page.url.split("/orders/")[1].split("?")[0]
    await shot(page, "07-order-paid")

    # An admin moves the order along in the console; the customer's page follows live.
    office = await open_context()
    admin_page = await office.page()
    await sign_in_admin(admin_page, office, shop["admin"])
    await shot(admin_page, "10-admin-products")
    await admin_page.get_by_role("link", name="Orders").click()
    await admin_page.get_by_role("row").filter(has=admin_page.locator(f"[data-order-id='{order_id}']")).count()
    await admin_page.locator(f"tr[data-order-id='{order_id}'] a").first.click()
    await expect(admin_page.get_by_role("heading", name=re.compile("^Order ORD-"))).to_be_visible()
    await admin_page.get_by_role("button", name="Mark as processing").click()
    await expect(admin_page.get_by_test_id("order-status")).to_have_text("Processing")
    await expect(status).to_have_text("Processing", timeout=15_000)

    await admin_page.get_by_label("Carrier").fill("UPS")
    await admin_page.get_by_label("Tracking number").fill("1Z999AA10123456784")
    await shot(admin_page, "11-admin-order")
    await admin_page.get_by_role("button", name="Mark as shipped").click()
    await expect(admin_page.get_by_test_id("order-status")).to_have_text("Shipped")
    await expect(status).to_have_text("Shipped", timeout=15_000)
    await expect(page.get_by_text("Shipped with: UPS")).to_be_visible()
    await shot(page, "08-order-shipped-live")

    await page.get_by_role("link", name="Orders", exact=True).click()
    await expect(page.locator(f"tr[data-order-id='{order_id}']")).to_contain_text("Shipped")
    await shot(page, "09-order-history")

    for name, heading in [("users", "Users"), ("categories", "Categories")]:
        await admin_page.get_by_role("link", name=heading, exact=True).click()
        await expect(admin_page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        await shot(admin_page, f"12-admin-{name}")
    assert customer.console_errors == [] or all("Failed to load resource" in e for e in customer.console_errors), (
        customer.console_errors
    )


async def test_the_admin_console_refuses_a_customer(suite, open_context):
    from playwright.async_api import expect

    user = await suite.register()
    browsing = await open_context()
    page = await browsing.page()
    await page.goto(browsing.url("/admin"))
    await page.get_by_label("Email").fill(user["email"])
    await page.get_by_label("Password").fill(user["password"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Administrators only")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("whose role is CUSTOMER")
    await expect(page.get_by_role("link", name="Orders")).to_have_count(0)
    await shot(page, "13-admin-refuses-customer")
    # A reload signs in again from the refresh cookie and still refuses.
    await page.reload()
    await expect(page.get_by_role("heading", name="Administrators only")).to_be_visible()


async def test_mfa_setup_shows_a_qr_code_and_login_asks_for_the_code(suite, open_context):
    from playwright.async_api import expect

    user = await suite.register()
    browsing = await open_context()
    page = await browsing.page()
    await page.goto(browsing.url("/login?next=/account/security"))
    await page.get_by_label("Email").fill(user["email"])
    await page.get_by_label("Password").fill(user["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    await expect(page.locator("img.qr")).to_be_visible()
    secret = await page.get_by_test_id("mfa-secret").inner_text()
    await shot(page, "14-account-mfa-setup")
    await page.get_by_label("Code").fill(totp_code(secret))
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.locator(".codes li")).to_have_count(10)
    await expect(page.get_by_role("heading", name="Where you are signed in")).to_be_visible()

    # Signing in again now takes the code.
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await page.goto(browsing.url("/login"))
    await page.get_by_label("Email").fill(user["email"])
    await page.get_by_label("Password").fill(user["password"])
    await page.get_by_role("button", name="Sign in").click()
    # The code that turned MFA on cannot be used again: the next step's code (accepted 30 s early).
    await page.get_by_label("Authentication code").fill(totp_code(secret, offset_steps=1))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()


async def test_the_storefront_fits_a_phone(suite, shop, open_context):
    from playwright.async_api import expect

    browsing = await open_context(PHONE)
    page = await browsing.page()
    await page.goto(browsing.url(f"/products?q={shop['tag']}"))
    await expect(page.locator(".product-card")).to_have_count(3)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await shot(page, "15-phone-catalog")
    await page.goto(browsing.url(f"/products/{shop['products'][0]['id']}"))
    await expect(page.get_by_role("button", name="Add to cart")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await shot(page, "16-phone-product")
    # Keyboard only: the skip link, then the search field, reachable with Tab.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
