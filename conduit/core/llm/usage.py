"""Token prices and Dify's `usage` object, computed with `Decimal` exactly as Dify does.

A price is `tokens × unit_price × price_unit`, where `unit_price` is the price per 1K tokens and
`price_unit` is 0.001, rounded half-up to 7 decimals. Amounts are strings on the wire (Dify's
shape: `"prompt_price": "0.0010330"`). A model without prices reports Dify's unpriced values
(`"0.0"` everywhere), as Dify does for models without a pricing config.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from conduit.core.llm.provider import Usage

PRICE_QUANTUM = Decimal("0.0000001")
PER_1K_TOKENS = Decimal("0.001")
_UNPRICED = "0.0"


@dataclass(frozen=True)
class ModelPrices:
    """Unit prices per `price_unit` tokens' worth (per 1K tokens by default) and the currency."""

    prompt_unit_price: Decimal
    completion_unit_price: Decimal
    price_unit: Decimal = PER_1K_TOKENS
    currency: str = "USD"

    @classmethod
    def per_1k(
        cls, prompt: str | Decimal, completion: str | Decimal, currency: str = "USD"
    ) -> ModelPrices:
        return cls(Decimal(prompt), Decimal(completion), PER_1K_TOKENS, currency)


@dataclass(frozen=True)
class UsageCost:
    prompt_price: Decimal
    completion_price: Decimal
    currency: str

    @property
    def total_price(self) -> Decimal:
        return self.prompt_price + self.completion_price


def token_price(tokens: int, unit_price: Decimal, price_unit: Decimal = PER_1K_TOKENS) -> Decimal:
    """The price of `tokens`, rounded half-up to 7 decimals (Dify's rule)."""
    return (tokens * unit_price * price_unit).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def compute_cost(usage: Usage, prices: ModelPrices) -> UsageCost:
    return UsageCost(
        prompt_price=token_price(usage.prompt_tokens, prices.prompt_unit_price, prices.price_unit),
        completion_price=token_price(
            usage.completion_tokens, prices.completion_unit_price, prices.price_unit
        ),
        currency=prices.currency,
    )


def format_amount(amount: Decimal) -> str:
    """Fixed-point with 7 decimals: `str()` would give `0E-7` for a zero price."""
    return format(amount.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP), "f")


def usage_payload(
    usage: Usage, latency: float, prices: ModelPrices | None = None
) -> dict[str, object]:
    """Dify's `metadata.usage` dict: token counts, unit prices, prices as strings, latency (s)."""
    payload: dict[str, object] = {
        "prompt_tokens": usage.prompt_tokens,
        "prompt_unit_price": _UNPRICED,
        "prompt_price_unit": _UNPRICED,
        "prompt_price": _UNPRICED,
        "completion_tokens": usage.completion_tokens,
        "completion_unit_price": _UNPRICED,
        "completion_price_unit": _UNPRICED,
        "completion_price": _UNPRICED,
        "total_tokens": usage.total_tokens,
        "total_price": _UNPRICED,
        "currency": "USD",
        "latency": latency,
    }
    if prices is not None:
        cost = compute_cost(usage, prices)
        unit = str(prices.price_unit)
        payload.update(
            prompt_unit_price=str(prices.prompt_unit_price),
            prompt_price_unit=unit,
            prompt_price=format_amount(cost.prompt_price),
            completion_unit_price=str(prices.completion_unit_price),
            completion_price_unit=unit,
            completion_price=format_amount(cost.completion_price),
            total_price=format_amount(cost.total_price),
            currency=cost.currency,
        )
    return payload
