"""Amounts as the CLI prints them: major units with the currency on screen (`currencies.format_amount`),
minor units as integers plus the currency in JSON."""

from __future__ import annotations

from collections.abc import Mapping

from donation_processor.currencies import format_amount


def totals_line(by_currency: Mapping[str, int]) -> str:
    """`1,175.00 USD, 1,200 JPY`, by currency code; `none` when empty."""
    if not by_currency:
        return "none"
    return ", ".join(format_amount(amount, currency) for currency, amount in sorted(by_currency.items()))
