"""The stand-in's pages as HTML: Stripe's hosted checkout page (/pay/<id>) and a Dashboard
(/dashboard); routes.py serves them and carries out their buttons.

Plain HTML forms: every button POSTs `action=<name>` and is answered 303, so that a browser, curl
or a test can drive them. Buttons carry stable ids (the action's name with dashes).
"""

from __future__ import annotations

import html
import json
from typing import Any

from paystore.devtools.standin import pricing
from paystore.devtools.standin.state import StandInState

STYLE = """body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#1a1f36}
h1{font-size:1.4rem}.test{background:#fff4e5;border:1px solid #f5a623;padding:.4rem .8rem;border-radius:4px}
.amount{font-size:2rem;font-weight:600}form{margin:.6rem 0}
button{font-size:1rem;padding:.5rem 1rem;margin:.2rem .4rem .2rem 0;border-radius:4px;border:1px solid #635bff;
background:#635bff;color:#fff;cursor:pointer}button.secondary{background:#fff;color:#635bff}
fieldset{border:1px solid #e3e8ee;border-radius:6px;margin:1rem 0}table{border-collapse:collapse}
td,th{text-align:left;padding:.2rem .8rem .2rem 0;vertical-align:top;overflow-wrap:anywhere}code{font-size:.85rem}
.hint{color:#586474;font-size:.9rem;margin:.2rem 0 .6rem}input{font-size:1rem;width:7rem;padding:.3rem}"""


def money(amount: int | None, currency: str | None) -> str:
    currency = (currency or "usd").lower()
    if amount is None:
        return "-"
    return f"{amount} {currency.upper()}" if currency in pricing.ZERO_DECIMAL else f"{amount / 100:.2f} {currency.upper()}"


def page(title: str, content: str) -> str:
    """A whole HTML page in the stand-in's style."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><main>{content}</main></body></html>")


def _button(action: str, label: str, secondary: bool = False) -> str:
    css = ' class="secondary"' if secondary else ""
    button_id = action.replace("_", "-")
    return f'<button type="submit" id="{button_id}" name="action" value="{action}"{css}>{html.escape(label)}</button>'


def _refund_row(path: str, refund: dict[str, Any]) -> str:
    status = refund["status"] + (f" ({refund['failure_reason']})" if refund.get("failure_reason") else "")
    fail = _form(path, _button("fail_refund", "Fail this refund", True), extra=_hidden("refund", refund["id"]))
    if refund["status"] != "succeeded":
        fail = ""
    return (f'<tr><td><code>{html.escape(refund["id"])}</code></td><td>{money(refund["amount"], refund["currency"])}</td>'
            f'<td class="refund-status">{html.escape(status)}</td><td>{fail}</td></tr>')


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'


def _form(path: str, *buttons: str, extra: str = "", hint: str = "") -> str:
    note = f'<p class="hint">{hint}</p>' if hint else ""
    return f'<form method="post" action="{html.escape(path)}">{extra}{"".join(buttons)}{note}</form>'


def checkout_page(state: StandInState, session_id: str) -> str:
    session, path = state.snapshot(session_id).session, f"/pay/{session_id}"
    product = state.line_items.get(session_id, {}).get("name", "Your purchase")
    head = (f'<p class="test">Test mode: a local stand-in for Stripe Checkout. No money moves.</p>'
            f"<h1>{html.escape(product)}</h1>"
            f'<p class="amount" id="amount">{money(session["amount_total"], session["currency"])}</p>')
    if session["status"] != "open":
        return page("Checkout", head + f'<p id="session-status">This checkout session is {session["status"]}.</p>'
                     f'<p><a href="/dashboard/sessions/{session_id}">See it in the Dashboard</a></p>')
    buyer = _form(path, _button("card", "Pay"), _button("bank_debit", "Pay by bank debit"),
                  _button("cancel", "Cancel and go back", secondary=True),
                  hint="Pay: the card is charged (checkout.session.completed, paid). Bank debit: checkout completes, "
                  "the money follows later (completed, unpaid; decide on the Dashboard page). Both return you to the "
                  "shop's success page. Cancel: no event, back to the shop's cancel page.")
    stripe = _form(path, _button("expire", "Let it expire", secondary=True),
                   hint="The session's 24 hours run out now (checkout.session.expired).")
    return page("Checkout", head + _breakdown(session) + _choices(state, session_id, session)
                 + '<p id="session-status">Card 4242 4242 4242 4242 (test)</p>' + buyer
                 + f"<fieldset><legend>What Stripe can do</legend>{stripe}</fieldset>"
                 f'<p><a href="/dashboard/sessions/{session_id}">Dashboard page of this session</a></p>')


def _breakdown(session: dict[str, Any]) -> str:
    """Subtotal, discount, tax and total, as Stripe's page lists them."""
    totals, currency = session.get("total_details") or {}, session["currency"]
    rows = [("subtotal", "Subtotal", session.get("amount_subtotal")),
            ("discount", "Discount", -(totals.get("amount_discount") or 0)),
            ("tax", "Tax", totals.get("amount_tax") or 0),
            ("total", "Total due", session.get("amount_total"))]
    lines = "".join(f'<tr><th scope=row>{label}</th><td id="breakdown-{key}">{money(value, currency)}</td></tr>'
                    for key, label, value in rows)
    presented = session.get("presentment_details")
    if presented:
        lines += (f'<tr><th scope=row>You pay</th><td id="breakdown-presentment">'
                  f'{money(presented["presentment_amount"], presented["presentment_currency"])}</td></tr>')
    return f'<table id="breakdown">{lines}</table>'


def _choices(state: StandInState, session_id: str, session: dict[str, Any]) -> str:
    """The promotion code field, the buyer's country (Stripe Tax) and currency (Adaptive Pricing)."""
    chosen, path = state.choices.get(session_id, {}), f"/pay/{session_id}"
    fields = []
    if session.get("allow_promotion_codes"):
        fields.append('<label for="promotion-code">Promotion code</label> <input id="promotion-code" name="code" '
                      f'value="{html.escape(chosen.get("code") or "")}" placeholder="{", ".join(pricing.PROMOTION_CODES)}"> ')
    if session["automatic_tax"]["enabled"]:
        options = "".join(f'<option value="{c}"{" selected" if chosen.get("country") == c else ""}>{c} ({rate} %)</option>'
                          for c, rate in pricing.TAX_RATES.items())
        fields.append(f'<label for="country">Country</label> <select id="country" name="country">{options}</select> ')
    currencies = [session["currency"], *pricing.PRESENTMENT_RATES]
    options = "".join(f'<option value="{c}"{" selected" if (chosen.get("currency") or session["currency"]) == c else ""}>'
                      f"{c.upper()}</option>" for c in currencies)
    fields.append(f'<label for="currency">Pay in</label> <select id="currency" name="currency">{options}</select> ')
    return _form(path, _button("choose", "Apply", secondary=True), extra="".join(fields),
                 hint="Promotion codes, tax and your currency are the stand-in's test tables (devtools/standin/pricing.py).")


def dashboard_page(state: StandInState, session_id: str, notice: str = "") -> str:
    snapshot = state.snapshot(session_id)
    session, charge, dispute, path = snapshot.session, snapshot.charge, snapshot.dispute, f"/dashboard/sessions/{session_id}"
    rows = [("Session", session_id), ("Status", session["status"]), ("Payment status", session["payment_status"]),
            ("Payment intent", f'{session["payment_intent"] or "-"} ({snapshot.intent_status or "none"})'),
            ("Amount", money(session["amount_total"], session["currency"])),
            ("Refunded", money(charge["amount_refunded"], charge["currency"]) if charge else "-"),
            ("Dispute", f'{dispute["id"]} ({dispute["status"]})' if dispute else "-"),
            ("purchase_id", session["metadata"].get("purchase_id", "-"))]
    table = "".join(f"<tr><th scope=row>{k}</th><td id=\"state-{k.lower().replace(' ', '-')}\">{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    forms = []
    if snapshot.intent_status == "processing":
        debit = _form(path, _button("debit_succeed", "Succeed"), _button("debit_fail", "Fail", True),
                      hint="checkout.session.async_payment_succeeded or async_payment_failed")
        forms.append(f"<fieldset><legend>The bank debit is processing</legend>{debit}</fieldset>")
    if charge and charge["amount_refunded"] < charge["amount"]:
        left = charge["amount"] - charge["amount_refunded"]
        field = (f'<label for="refund-amount">Amount to refund, in minor units (at most {left})</label> '
                 f'<input id="refund-amount" name="amount" type="number" min="1" max="{left}" value="{left}" required> ')
        full = _form(path, _button("refund_full", "Refund in full", True), hint="charge.refunded, with the total refunded so far")
        forms.append(f"<fieldset><legend>Refund</legend>{_form(path, _button('refund', 'Refund'), extra=field)}{full}</fieldset>")
    refunds = (charge or {}).get("refunds", {}).get("data", [])
    if refunds:
        listed = "".join(_refund_row(path, r) for r in refunds)
        forms.append(f'<fieldset><legend>Refunds</legend><table id="refunds">{listed}</table><p class="hint">Fail this refund: '
                     "the card was expired or cancelled, the money goes back to the balance (refund.failed)</p></fieldset>")
    if charge and dispute is None:
        hint = "The buyer disputes the charge with their bank (charge.dispute.created)"
        open_form = _form(path, _button("dispute", "Dispute", True), hint=hint)
        forms.append(f"<fieldset><legend>Dispute</legend>{open_form}</fieldset>")
    if dispute and dispute["status"] == "needs_response":
        close = _form(path, _button("dispute_win", "Win"), _button("dispute_lose", "Lose", True),
                      hint="charge.dispute.closed, won or lost")
        forms.append(f"<fieldset><legend>Dispute {dispute['id']}</legend>{close}</fieldset>")
    deliveries = "".join(
        f"<tr><td><code>{d['event_id']}</code></td><td>{d['type']}</td><td>{html.escape(_short(d['answer']))}</td></tr>"
        for d in state.deliveries_for(session_id))
    content = (f'<p class="test">Stand-in for the Stripe Dashboard (test mode)</p><h1>Checkout session</h1>'
               f'{f"<p role=status id=notice>{html.escape(notice)}</p>" if notice else ""}'
               f"<table>{table}</table>{''.join(forms) or '<p>Nothing to do for this session now.</p>'}"
               '<h2>Webhook deliveries</h2><table id="deliveries">'
               f"<tr><th>event</th><th>type</th><th>paystore answered</th></tr>{deliveries}</table>"
               f'<p><a href="/dashboard">All sessions</a></p>')
    return page("Dashboard", content)


def _short(answer: str) -> str:
    """"200 {"outcome": "completed", ...}" -> "200 completed"; anything else as it came."""
    status, _, body = answer.partition(" ")
    try:
        return f"{status} {json.loads(body).get('outcome') or json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return answer


def dashboard_index(state: StandInState) -> str:
    rows = "".join(f'<tr><td><a href="/dashboard/sessions/{s["id"]}">{s["id"]}</a></td><td>{s["status"]}</td>'
                   f'<td>{s["payment_status"]}</td><td>{money(s["amount_total"], s["currency"])}</td></tr>'
                   for s in state.all_sessions())
    return page("Dashboard", '<p class="test">Stand-in for the Stripe Dashboard (test mode)</p><h1>Checkout sessions</h1>'
                f"<table><tr><th>session</th><th>status</th><th>payment</th><th>amount</th></tr>{rows}</table>")
