"""The buyer's journeys, clicked through in headless Chromium (Debian's chromium + chromedriver).

paystore is served over real HTTP with its `success_url` pointing at its own return page; the
Stripe stand-in's hosted checkout page and Dashboard page deliver signed webhooks when their
buttons are pressed. Each journey is checked through the browser (where it lands, what it shows),
the API (the purchase's status) and Stripe's side (what `retrieve` answers must agree with the
events, since the return page and reconcile read them).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

from paystore import create_app
from paystore.devtools.http import free_port
from paystore.devtools.shop import PretendShop
from paystore.devtools.standin import API_VERSION, StripeStandIn
from paystore.extension import Paystore
from tests.conftest import app_settings
from tests.support.api import Api
from tests.support.processes import paystore_cli

CHROMIUM = os.environ.get("PAYSTORE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PAYSTORE_CHROMEDRIVER", "/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps calling Google's services, which on a
# closed network means a stream of failing connections.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1000,900")
NOTIFY_SECRET = "whsec_shop_test_9d2c"
PAGE_WAIT_S = 60  # a bound on a shared 2-core machine, not a speed claim
SCREENSHOTS = os.environ.get("PAYSTORE_SCREENSHOTS")  # a directory: keep a PNG of each page seen


@pytest.fixture(scope="module")
def shop() -> Iterator[PretendShop]:
    shop = PretendShop().serve()
    yield shop
    shop.stop()


@pytest.fixture(scope="module")
def journey_server(database_url: str, standin_server: StripeStandIn, shop: PretendShop) -> Iterator[str]:
    """paystore whose success_url is its own return page and cancel_url the shop's page."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(app_settings(
        database_url, standin_server,
        success_url=f"{url}/checkout/return?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{shop.url}/cancelled",
        # As a course shop sets it up: promotion codes and Stripe Tax (the stand-in's default
        # country, US, adds no tax, so a plain journey pays the program's price).
        allow_promotion_codes=True, automatic_tax=True, tax_behavior="exclusive",
    ))
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()
    Paystore.of(app).engine.dispose()


@pytest.fixture
def journey(journey_server: str, standin_server: StripeStandIn, shop: PretendShop) -> Iterator[Journey]:
    standin_server.reset()
    standin_server.webhook_url = journey_server + "/webhooks/stripe"
    shop.received.clear()
    yield Journey(Api(journey_server), standin_server, journey_server)
    standin_server.reset()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: run scripts/install-system-deps.sh (Debian chromium, chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path: selenium-manager never goes looking on the network.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_WAIT_S)
    yield driver
    driver.quit()


class Journey:
    """One buyer: checkout through the API, then the browser, then checks on every side."""

    def __init__(self, api: Api, standin: StripeStandIn, base_url: str) -> None:
        self.api, self.standin, self.base_url = api, standin, base_url
        self.purchase: dict[str, Any] = {}

    def checkout(self, user_id: str) -> str:
        answer = self.api.checkout(user_id)
        assert answer.status_code == 201, answer.text
        self.purchase = answer.json()
        return self.purchase["checkout_url"]

    @property
    def session_id(self) -> str:
        return self.purchase["stripe_session_id"]

    @property
    def dashboard_url(self) -> str:
        return f"{self.standin.base_url}/dashboard/sessions/{self.session_id}"

    def status(self) -> str:
        answer = self.api.get(f"/purchases/{self.purchase['purchase_id']}")
        assert answer.status_code == 200, answer.text
        return answer.json()["status"]

    def delivered(self) -> list[tuple[str, str]]:
        """(event type, paystore's status code) of every webhook the pages sent for this session."""
        return [(d["type"], d["answer"].split()[0]) for d in self.standin.state.deliveries_for(self.session_id)]


def click(browser: WebDriver, button_id: str, shot: str | None = None) -> None:
    """Press a button and wait until the browser has left the page (every form answers 303)."""
    button = browser.find_element(By.ID, button_id)
    if shot:
        screenshot(browser, shot)
    button.click()
    WebDriverWait(browser, PAGE_WAIT_S).until(lambda b: _stale(button))


def _stale(element: Any) -> bool:
    try:
        element.is_enabled()
        return False
    except Exception:
        return True


def screenshot(browser: WebDriver, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))


def text_of(browser: WebDriver, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def expected_return_url(journey: Journey) -> str:
    return f"{journey.base_url}/checkout/return?session_id={journey.session_id}"


def deliver_notifications(cli_env: dict[str, str], shop: PretendShop) -> list[dict[str, Any]]:
    """Run the one-shot deliverer as ops would; answer what the shop received, signature checked."""
    env = {**cli_env, "PAYSTORE_NOTIFY_URL": shop.notifications_url, "PAYSTORE_NOTIFY_SECRET": NOTIFY_SECRET}
    result = paystore_cli(env, "notifications", "deliver")
    assert result.returncode == 0, result.stdout + result.stderr
    verified = shop.verified_with(NOTIFY_SECRET)
    assert len(verified) == len(shop.received), "a notification arrived with a bad Paystore-Signature"
    return verified


def notified(verified: list[dict[str, Any]], purchase_id: str) -> list[tuple[str, str | None]]:
    mine = [n for n in verified if n["data"]["purchase"]["purchase_id"] == purchase_id]
    return [(n["type"], n["data"].get("previous_status")) for n in mine]


def test_pay_by_card_lands_on_the_return_page_completed_and_the_shop_is_told(
    journey: Journey, browser: WebDriver, shop: PretendShop, cli_env: dict[str, str]
) -> None:
    browser.get(journey.checkout("buyer_card"))
    assert "49.00 USD" in text_of(browser, "amount")
    click(browser, "card", shot="checkout-page")
    # Stripe's redirect: success_url with {CHECKOUT_SESSION_ID} replaced by the session id.
    assert browser.current_url == expected_return_url(journey)
    screenshot(browser, "return-page-card")
    assert text_of(browser, "purchase-status") == "completed"
    assert journey.delivered() == [("checkout.session.completed", "200")]
    assert journey.status() == "completed"
    session = journey.standin.sessions[journey.session_id]
    assert (session["status"], session["payment_status"]) == ("complete", "paid")
    assert journey.standin.state.payment_intents[session["payment_intent"]] == "succeeded"

    verified = deliver_notifications(cli_env, shop)
    assert notified(verified, journey.purchase["purchase_id"]) == [("purchase.completed", "pending")]
    assert verified[0]["data"]["purchase"]["status"] == "completed"


def test_a_promotion_code_and_tax_on_the_checkout_page_complete_a_discounted_taxed_purchase(
    journey: Journey, browser: WebDriver, shop: PretendShop, cli_env: dict[str, str]
) -> None:
    browser.get(journey.checkout("buyer_promo_tax"))
    browser.find_element(By.ID, "promotion-code").send_keys("COURSE10")
    Select(browser.find_element(By.ID, "country")).select_by_value("DE")
    click(browser, "choose")
    breakdown = {key: text_of(browser, f"breakdown-{key}") for key in ("subtotal", "discount", "tax", "total")}
    assert breakdown == {"subtotal": "49.00 USD", "discount": "-4.90 USD", "tax": "8.38 USD", "total": "52.48 USD"}
    click(browser, "card", shot="checkout-page-promo-tax")

    assert text_of(browser, "purchase-status") == "completed"
    purchase = journey.api.get(f"/purchases/{journey.purchase['purchase_id']}").json()
    assert (purchase["amount_total"], purchase["amount_discount"], purchase["amount_tax"], purchase["discount"]) == (
        5248, 490, 838, "promo_test_course10")
    [told] = [n for n in deliver_notifications(cli_env, shop)
              if n["data"]["purchase"]["purchase_id"] == purchase["purchase_id"]]
    assert told["data"]["purchase"] == purchase


def test_a_code_that_does_not_exist_is_refused_on_the_page_and_nothing_is_charged(
    journey: Journey, browser: WebDriver
) -> None:
    browser.get(journey.checkout("buyer_wrong_code"))
    browser.find_element(By.ID, "promotion-code").send_keys("NOPE")
    click(browser, "choose")

    assert "is not a test promotion code" in browser.find_element(By.TAG_NAME, "body").text
    assert journey.delivered() == [] and journey.status() == "pending"


def test_the_return_page_alone_completes_a_purchase_whose_webhook_is_lost(journey: Journey, browser: WebDriver) -> None:
    browser.get(journey.checkout("buyer_no_webhook"))
    journey.standin.webhook_url = f"http://127.0.0.1:{free_port()}/webhooks/stripe"  # nobody listens there
    click(browser, "card")
    assert journey.delivered() == [("checkout.session.completed", "not")]  # "not delivered: ConnectionError"
    # The return page asks Stripe (the stand-in's stored session, which the Pay button moved on).
    assert text_of(browser, "purchase-status") == "completed"
    assert journey.status() == "completed"


@pytest.mark.parametrize(("button", "event", "final"), [
    ("debit-succeed", "checkout.session.async_payment_succeeded", "completed"),
    ("debit-fail", "checkout.session.async_payment_failed", "failed"),
])
def test_bank_debit_waits_then_succeeds_or_fails(
    journey: Journey, browser: WebDriver, shop: PretendShop, cli_env: dict[str, str], button: str, event: str, final: str
) -> None:
    browser.get(journey.checkout("buyer_debit"))
    click(browser, "bank-debit")
    assert browser.current_url == expected_return_url(journey)
    screenshot(browser, "return-page-bank-debit")
    assert text_of(browser, "purchase-status") == "awaiting_payment"
    assert journey.status() == "awaiting_payment"
    session = journey.standin.sessions[journey.session_id]
    assert (session["status"], session["payment_status"]) == ("complete", "unpaid")
    assert journey.standin.state.payment_intents[session["payment_intent"]] == "processing"

    browser.get(journey.dashboard_url)
    assert text_of(browser, "state-payment-status") == "unpaid"
    click(browser, button, shot=f"dashboard-{button}")
    screenshot(browser, f"dashboard-after-{button}")
    assert journey.status() == final
    assert journey.delivered() == [("checkout.session.completed", "200"), (event, "200")]
    browser.get(expected_return_url(journey))  # the buyer comes back to the result page later
    assert text_of(browser, "purchase-status") == final
    verified = deliver_notifications(cli_env, shop)
    assert notified(verified, journey.purchase["purchase_id"]) == [
        ("purchase.awaiting_payment", "pending"), (f"purchase.{final}", "awaiting_payment")]
    gateway = journey_gateway(journey)
    retrieved = gateway.retrieve_checkout_session(journey.session_id)
    assert retrieved.payment_status == ("paid" if final == "completed" else "unpaid")
    intent = "succeeded" if final == "completed" else "requires_payment_method"
    assert gateway.payment_intent_status(retrieved.payment_intent_id) == intent


def test_cancel_sends_the_buyer_to_cancel_url_and_no_event(journey: Journey, browser: WebDriver, shop: PretendShop) -> None:
    browser.get(journey.checkout("buyer_cancel"))
    click(browser, "cancel")
    assert browser.current_url == f"{shop.url}/cancelled"
    assert "nothing was charged" in text_of(browser, "shop-page")
    assert journey.delivered() == []
    assert journey.status() == "pending"
    assert journey.standin.sessions[journey.session_id]["status"] == "open"


def test_letting_the_session_expire_expires_the_purchase(journey: Journey, browser: WebDriver) -> None:
    checkout_url = journey.checkout("buyer_expire")
    browser.get(checkout_url)
    click(browser, "expire")
    assert browser.current_url == checkout_url
    assert "expired" in text_of(browser, "session-status")
    assert journey.delivered() == [("checkout.session.expired", "200")]
    assert journey.status() == "expired"
    assert journey_gateway(journey).retrieve_checkout_session(journey.session_id).status == "expired"


def test_refund_in_parts_then_in_full(journey: Journey, browser: WebDriver) -> None:
    browser.get(journey.checkout("buyer_refund"))
    click(browser, "card")
    browser.get(journey.dashboard_url)
    field = browser.find_element(By.ID, "refund-amount")
    field.clear()
    field.send_keys("1000")
    click(browser, "refund", shot="dashboard-refund")
    purchase = journey.api.get(f"/purchases/{journey.purchase['purchase_id']}").json()
    assert (purchase["status"], purchase["refunded_amount"]) == ("completed", 1000)
    assert text_of(browser, "state-refunded") == "10.00 USD"
    click(browser, "refund-full")
    purchase = journey.api.get(f"/purchases/{journey.purchase['purchase_id']}").json()
    assert (purchase["status"], purchase["refunded_amount"]) == ("refunded", 4900)
    screenshot(browser, "dashboard-refunded")
    refund_events = [("refund.created", "200"), ("charge.refunded", "200")]
    assert journey.delivered() == [("checkout.session.completed", "200"), *refund_events * 2]
    assert browser.find_elements(By.ID, "refund") == []  # nothing left to refund


def test_a_refund_that_fails_on_the_dashboard_brings_the_purchase_back_and_the_shop_is_told(
    journey: Journey, browser: WebDriver, shop: PretendShop, cli_env: dict[str, str]
) -> None:
    browser.get(journey.checkout("buyer_refund_fails"))
    click(browser, "card")
    browser.get(journey.dashboard_url)
    click(browser, "refund-full")
    assert journey.status() == "refunded"
    click(browser, "fail-refund", shot="dashboard-fail-refund")

    assert journey.status() == "completed"
    assert "failed (expired_or_canceled_card)" in browser.find_element(By.ID, "refunds").text
    assert [kind for kind, _ in journey.delivered()][-3:] == ["refund.failed", "refund.updated", "charge.refund.updated"]
    told = notified(deliver_notifications(cli_env, shop), journey.purchase["purchase_id"])
    assert told[-3:] == [("purchase.refunded", "completed"), ("purchase.refund_failed", None),
                         ("purchase.completed", "refunded")]


@pytest.mark.parametrize(
    ("button", "closed", "final"), [("dispute-win", "won", "completed"), ("dispute-lose", "lost", "dispute_lost")]
)
def test_dispute_then_win_or_lose(journey: Journey, browser: WebDriver, button: str, closed: str, final: str) -> None:
    browser.get(journey.checkout("buyer_dispute"))
    click(browser, "card")
    browser.get(journey.dashboard_url)
    click(browser, "dispute")
    assert journey.status() == "disputed"
    assert "needs_response" in text_of(browser, "state-dispute")
    click(browser, button)
    assert journey.status() == final
    assert closed in text_of(browser, "state-dispute")
    assert journey.delivered() == [
        ("checkout.session.completed", "200"), ("charge.dispute.created", "200"), ("charge.dispute.closed", "200")]


def journey_gateway(journey: Journey) -> Any:
    """paystore's own Stripe gateway, pointed at the stand-in: what reconcile and the return page read."""
    from paystore.devtools.credentials import STRIPE_KEY
    from paystore.stripe.gateway import StripeGateway

    return StripeGateway(STRIPE_KEY, (), api_base=journey.standin.base_url, timeout_s=10)


# ---------------------------------------------------------------- the pages without a browser
def test_buttons_that_do_not_apply_are_refused_and_send_nothing(journey: Journey) -> None:
    checkout_url = journey.checkout("buyer_refused")
    for action in ("refund", "dispute", "debit_succeed", "dispute_win"):  # nothing is paid yet
        answer = requests.post(journey.dashboard_url, data={"action": action}, allow_redirects=False, timeout=30)
        assert answer.status_code == 409, (action, answer.text)
    assert requests.post(checkout_url, data={"action": "card"}, allow_redirects=False, timeout=30).status_code == 303
    for amount in ("0", "4901", "-5", "ten"):
        answer = requests.post(journey.dashboard_url, data={"action": "refund", "amount": amount}, allow_redirects=False,
                               timeout=30)
        assert answer.status_code == 409, amount
    paid_again = requests.post(checkout_url, data={"action": "card"}, allow_redirects=False, timeout=30)
    assert paid_again.status_code == 409
    assert requests.post(checkout_url, data={"action": "bogus"}, allow_redirects=False, timeout=30).status_code == 400
    assert journey.delivered() == [("checkout.session.completed", "200")]


def test_the_payment_intent_the_stand_in_answers_agrees_with_the_charge(journey: Journey) -> None:
    checkout_url = journey.checkout("buyer_intent")
    requests.post(checkout_url, data={"action": "card"}, allow_redirects=False, timeout=30)
    state = journey.standin.state.snapshot(journey.session_id)
    intent = requests.get(f"{journey.standin.base_url}/v1/payment_intents/{state.session['payment_intent']}",
                          headers={"Authorization": "Bearer sk_test_x", "Stripe-Version": API_VERSION}, timeout=30).json()
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", 4900, "usd")
    assert intent["latest_charge"] == state.charge["id"]
    assert intent["metadata"]["purchase_id"] == journey.purchase["purchase_id"]


def test_the_pretend_shop_checks_the_notification_signature() -> None:
    from paystore.services.notifications.signing import signature_header

    shop, body, now = PretendShop("whsec_demo").serve(), b'{"type": "purchase.completed"}', int(time.time())
    try:
        for header, answer in [(signature_header(body, ("whsec_old", "whsec_demo"), now), 200),
                               (signature_header(body, ("whsec_other",), now), 401),
                               (signature_header(body, ("whsec_demo",), now - 3600), 401)]:
            sent = requests.post(shop.notifications_url, data=body, headers={"Paystore-Signature": header}, timeout=30)
            assert sent.status_code == answer
        assert [r.verified for r in shop.received] == [True, False, False]
    finally:
        shop.stop()
    unchecked = PretendShop(None).serve()
    try:
        requests.post(unchecked.notifications_url, data=body, timeout=30)
        assert [r.verified for r in unchecked.received] == [None]
    finally:
        unchecked.stop()
