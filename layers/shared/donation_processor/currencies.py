"""ISO 4217 currencies Stripe can charge (lower case, as Stripe spells them) and Stripe's amount rules."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

STRIPE_CURRENCIES = frozenset(
    [
        "aed",
        "afn",
        "all",
        "amd",
        "ang",
        "aoa",
        "ars",
        "aud",
        "awg",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bhd",
        "bif",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "byn",
        "bzd",
        "cad",
        "cdf",
        "chf",
        "clp",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "djf",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "fkp",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gnf",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "isk",
        "jmd",
        "jod",
        "jpy",
        "kes",
        "kgs",
        "khr",
        "kmf",
        "krw",
        "kwd",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mga",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "omr",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "pyg",
        "qar",
        "ron",
        "rsd",
        "rub",
        "rwf",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "shp",
        "sle",
        "sos",
        "srd",
        "std",
        "szl",
        "thb",
        "tjs",
        "tnd",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "ugx",
        "usd",
        "uyu",
        "uzs",
        "vnd",
        "vuv",
        "wst",
        "xaf",
        "xcd",
        "xcg",
        "xof",
        "xpf",
        "yer",
        "zar",
        "zmw",
    ]
)

# Stripe accepts at most eight digits in the smallest unit.
MAX_AMOUNT_MINOR_UNITS = 99_999_999

# Stripe's minimum charge per settlement currency, in minor units (Stripe lists them in major units):
# https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts
# Stripe applies the minimum of the account's settlement currency after conversion; without exchange rates
# we can only hold a charge to the minimum of its own currency. A currency Stripe publishes no minimum for
# keeps the rule it had before: any positive amount.
MINIMUM_CHARGE_MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {
        "usd": 50,
        "aed": 200,
        "ars": 50,
        "aud": 50,
        "brl": 50,
        "cad": 50,
        "chf": 50,
        "cop": 50,
        "czk": 1500,
        "dkk": 250,
        "eur": 50,
        "gbp": 30,
        "hkd": 400,
        "huf": 17500,
        "idr": 50,
        "ils": 50,
        "inr": 50,
        "jpy": 50,
        "krw": 50,
        "mxn": 1000,
        "myr": 200,
        "nok": 300,
        "nzd": 50,
        "php": 50,
        "pln": 200,
        "ron": 200,
        "rub": 50,
        "sek": 300,
        "sgd": 50,
        "thb": 1000,
        "zar": 50,
    }
)

# Zero-decimal currencies: the amount is already in whole units (amount 500 in jpy is ¥500), so these need
# no rule beyond being positive and meeting any minimum above. https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)

# Three-decimal currencies: Stripe requires the last digit of the amount to be 0 (5.124 kwd must be sent as
# 5120 or 5130). https://docs.stripe.com/currencies#three-decimal (the section as worded in
# https://web.archive.org/web/20220618095455/https://stripe.com/en-mt/docs/currencies)
THREE_DECIMAL_CURRENCIES = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])

# Stripe's special cases (https://docs.stripe.com/currencies#special-cases): isk and ugx are whole-unit
# currencies that Stripe still takes as two-decimal amounts whose decimals are always 00 (5 isk is 500), so
# the amount must be a multiple of 100. ugx is also on Stripe's zero-decimal list; its special case is the
# rule for amounts. huf and twd are whole units only for payouts; charges may carry decimals, so no rule here.
WHOLE_UNITS_AS_TWO_DECIMALS = frozenset(["isk", "ugx"])


def broken_amount_rule(amount: int, currency: str) -> str | None:
    """The Stripe rule a positive `amount` in a supported `currency` breaks, as an error message, or None."""
    minimum = MINIMUM_CHARGE_MINOR_UNITS.get(currency)
    if minimum is not None and amount < minimum:
        return f"amount must be at least {minimum} minor units for {currency} (Stripe's minimum charge)"
    if currency in THREE_DECIMAL_CURRENCIES and amount % 10:
        return f"amount must be a multiple of 10 for {currency} (three-decimal currency)"
    if currency in WHOLE_UNITS_AS_TWO_DECIMALS and amount % 100:
        return (
            f"amount must be a multiple of 100 for {currency} "
            f"(Stripe takes whole {currency} as a two-decimal amount ending in 00)"
        )
    return None


def minor_unit_digits(currency: str) -> int:
    """How many digits of an amount are below the major unit, as Stripe counts amounts in `currency`."""
    if currency in WHOLE_UNITS_AS_TWO_DECIMALS:
        return 2
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    if currency in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def format_amount(amount: int, currency: str) -> str:
    """An amount in minor units as people read it: `1,175.00 USD`, `1,200 JPY`, `5.120 KWD`."""
    digits = minor_unit_digits(currency)
    major = Decimal(amount).scaleb(-digits)
    return f"{major:,.{digits}f} {currency.upper()}"
