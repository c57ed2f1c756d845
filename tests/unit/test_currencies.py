"""Stripe's amount rules per currency: minimum charges, zero- and three-decimal currencies, special cases."""

from __future__ import annotations

import pytest

from donation_processor.currencies import (
    MINIMUM_CHARGE_MINOR_UNITS,
    STRIPE_CURRENCIES,
    THREE_DECIMAL_CURRENCIES,
    WHOLE_UNITS_AS_TWO_DECIMALS,
    ZERO_DECIMAL_CURRENCIES,
    broken_amount_rule,
    format_amount,
)


def test_every_currency_in_the_rule_tables_is_one_stripe_can_charge() -> None:
    # GIVEN the currencies named by Stripe's minimum, zero-decimal, three-decimal and special-case tables
    tabled = (
        set(MINIMUM_CHARGE_MINOR_UNITS)
        | ZERO_DECIMAL_CURRENCIES
        | THREE_DECIMAL_CURRENCIES
        | WHOLE_UNITS_AS_TWO_DECIMALS
    )

    # WHEN they are compared with the currencies Stripe supports
    unknown = tabled - STRIPE_CURRENCIES

    # THEN none is misspelled or missing from the supported list
    assert unknown == set()


def test_no_currency_is_both_zero_decimal_and_three_decimal() -> None:
    # GIVEN Stripe's zero-decimal and three-decimal lists
    # WHEN they are intersected
    both = ZERO_DECIMAL_CURRENCIES & THREE_DECIMAL_CURRENCIES

    # THEN they do not overlap
    assert both == set()


@pytest.mark.parametrize(
    ("currency", "minimum"),
    [
        ("usd", 50),  # $0.50
        ("eur", 50),  # €0.50
        ("gbp", 30),  # £0.30
        ("cad", 50),
        ("aud", 50),
        ("chf", 50),
        ("jpy", 50),  # ¥50, zero-decimal: whole yen
        ("krw", 50),  # ₩50, zero-decimal: whole won
        ("huf", 17500),  # 175.00 Ft, charged as a two-decimal currency
        ("mxn", 1000),  # $10
        ("thb", 1000),  # ฿10
        ("czk", 1500),  # 15.00 Kč
        ("hkd", 400),  # $4.00
    ],
)
def test_the_minimum_charge_is_stripes_published_amount_in_minor_units(currency: str, minimum: int) -> None:
    # GIVEN a settlement currency Stripe publishes a minimum charge for
    # WHEN its minimum is looked up
    # THEN it is Stripe's amount, written in the currency's minor units
    assert MINIMUM_CHARGE_MINOR_UNITS[currency] == minimum


@pytest.mark.parametrize(
    ("amount", "currency", "rule"),
    [
        (1, "usd", "at least 50 minor units for usd (Stripe's minimum charge)"),
        (49, "eur", "at least 50 minor units for eur (Stripe's minimum charge)"),
        (29, "gbp", "at least 30 minor units for gbp (Stripe's minimum charge)"),
        (49, "jpy", "at least 50 minor units for jpy (Stripe's minimum charge)"),
        (17499, "huf", "at least 17500 minor units for huf (Stripe's minimum charge)"),
        (5124, "kwd", "a multiple of 10 for kwd (three-decimal currency)"),
        (1, "bhd", "a multiple of 10 for bhd (three-decimal currency)"),
        (550, "isk", "a multiple of 100 for isk"),
        (501, "ugx", "a multiple of 100 for ugx"),
    ],
)
def test_an_amount_stripe_would_refuse_names_the_rule_it_breaks(
    amount: int, currency: str, rule: str
) -> None:
    # GIVEN an amount Stripe refuses for its currency
    # WHEN the amount rules are checked
    broken = broken_amount_rule(amount, currency)

    # THEN the rule is named, with the currency and the bound
    assert broken is not None
    assert rule in broken


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (50, "usd"),  # exactly the minimum
        (30, "gbp"),
        (50, "jpy"),
        (17500, "huf"),
        (5120, "kwd"),  # last digit 0
        (10, "omr"),
        (500, "isk"),  # 5 ISK, sent as a two-decimal amount
        (100, "ugx"),
        (1, "vnd"),  # zero-decimal, no published minimum: one whole dong
        (1, "ngn"),  # no published minimum: any positive amount, as before
        (17545, "huf"),  # HUF's whole-unit rule is for payouts only, not charges
        (80045, "twd"),  # TWD likewise
    ],
)
def test_an_amount_within_stripes_rules_breaks_none(amount: int, currency: str) -> None:
    # GIVEN an amount Stripe accepts for its currency
    # WHEN the amount rules are checked
    # THEN no rule is broken
    assert broken_amount_rule(amount, currency) is None


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (117500, "usd", "1,175.00 USD"),
        (5, "eur", "0.05 EUR"),
        (0, "jpy", "0 JPY"),
        (1200, "jpy", "1,200 JPY"),
        (5120, "kwd", "5.120 KWD"),
        (500, "isk", "5.00 ISK"),
        (150000, "ugx", "1,500.00 UGX"),
    ],
)
def test_an_amount_in_minor_units_reads_in_its_currency_s_major_units(
    amount: int, currency: str, shown: str
) -> None:
    assert format_amount(amount, currency) == shown
