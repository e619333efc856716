"""The built-in tools: Dify's `time` and `maths` providers, by Dify's ids and names (an
exported agent app that uses them imports with them). They need no credentials and no
network: the clock, the time zone database and arithmetic.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conduit.core.tools.base import Tool, ToolError, ToolInputError, ToolParameter, ToolProvider

# -- time ------------------------------------------------------------------------------------

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def zone(name: Any, parameter: str = "timezone") -> ZoneInfo:
    """The time zone named `name` (IANA's names, e.g. "Europe/Paris" or "UTC")."""
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolInputError(
            f"{parameter} must be a time zone of the IANA database, e.g. UTC or Europe/Paris; "
            f"not {name!r}"
        ) from None


def current_time(arguments: dict[str, Any]) -> str:
    now = datetime.now(UTC).astimezone(zone(arguments.get("timezone") or "UTC"))
    try:
        return now.strftime(str(arguments.get("format") or DATETIME_FORMAT))
    except ValueError as error:
        raise ToolInputError(f"format is not a valid strftime format: {error}") from None


def weekday(arguments: dict[str, Any]) -> str:
    try:
        day = datetime(int(arguments["year"]), int(arguments["month"]), int(arguments["day"]))
    except (ValueError, OverflowError) as error:
        raise ToolInputError(f"Not a date: {error}") from None
    return f"{day.strftime('%B')} {day.day}, {day.year} is {day.strftime('%A')}."


def convert_timezone(arguments: dict[str, Any]) -> str:
    source = zone(arguments["current_timezone"], "current_timezone")
    target = zone(arguments["target_timezone"], "target_timezone")
    try:
        moment = datetime.strptime(str(arguments["current_time"]), DATETIME_FORMAT)
    except ValueError:
        raise ToolInputError(
            f"current_time must be written {DATETIME_FORMAT} (e.g. 2024-01-31 18:30:00)"
        ) from None
    try:
        return moment.replace(tzinfo=source).astimezone(target).strftime(DATETIME_FORMAT)
    except OverflowError:
        raise ToolInputError("current_time is out of the range of dates") from None


TIME = ToolProvider(
    id="time",
    label="CurrentTime",
    description="A tool for getting the current time, the day of the week and time zones.",
    icon="🕒",
    background="#FFEAD5",
    tools=(
        Tool(
            provider="time",
            name="current_time",
            label="Current Time",
            description="The current date and time, in a time zone.",
            invoke=current_time,
            parameters=(
                ToolParameter(
                    "format",
                    "string",
                    "Format",
                    "The time's format, as Python's strftime writes it.",
                    form="form",
                    default=DATETIME_FORMAT,
                ),
                ToolParameter(
                    "timezone",
                    "string",
                    "Timezone",
                    "The time zone (IANA's name, e.g. UTC or Asia/Shanghai).",
                    form="form",
                    default="UTC",
                    check=zone,
                ),
            ),
        ),
        Tool(
            provider="time",
            name="weekday",
            label="Weekday Calculator",
            description="The day of the week of a date.",
            invoke=weekday,
            parameters=(
                ToolParameter("year", "number", "Year", "The year, e.g. 2024.", required=True),
                ToolParameter("month", "number", "Month", "The month, 1 to 12.", required=True),
                ToolParameter("day", "number", "Day", "The day of the month.", required=True),
            ),
        ),
        Tool(
            provider="time",
            name="convert_timezone",
            label="Timezone Conversion",
            description="A date and time in one time zone, converted to another.",
            invoke=convert_timezone,
            parameters=(
                ToolParameter(
                    "current_time",
                    "string",
                    "Current time",
                    f"The date and time to convert, written {DATETIME_FORMAT}.",
                    required=True,
                ),
                ToolParameter(
                    "current_timezone",
                    "string",
                    "Current timezone",
                    "The time zone it is in (IANA's name).",
                    required=True,
                ),
                ToolParameter(
                    "target_timezone",
                    "string",
                    "Target timezone",
                    "The time zone to convert it to (IANA's name).",
                    required=True,
                ),
            ),
        ),
    ),
)

# -- maths -----------------------------------------------------------------------------------

MAX_EXPRESSION = 1000  # characters
MAX_DIGITS = 1000  # of an integer result or step
MAX_FACTORIAL = 1000

_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(value: Any, digits: Any = None) -> Any:
    """`round`, its digits bounded (a huge negative count costs a huge power of ten)."""
    if digits is None:
        return round(value)
    if not isinstance(digits, int) or isinstance(digits, bool) or abs(digits) > MAX_DIGITS:
        raise ToolInputError(
            f"round takes a whole number of digits from -{MAX_DIGITS} to {MAX_DIGITS}"
        )
    return round(value, digits)


def _factorial(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_FACTORIAL:
        raise ToolInputError(f"factorial takes a whole number from 0 to {MAX_FACTORIAL}")
    return math.factorial(n)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
}


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
        raise ToolInputError(f"The result has more than {MAX_DIGITS} digits.")
    return value


def _power(base: Any, exponent: Any) -> Any:
    """`base ** exponent`, refused before it is computed when its result would be too long."""
    whole = isinstance(base, int) and isinstance(exponent, int)
    if whole and exponent > 0 and abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_DIGITS:
        raise ToolInputError(f"The result has more than {MAX_DIGITS} digits.")
    return base**exponent


def evaluate(node: ast.AST) -> Any:
    """The value of an arithmetic expression's tree: numbers, + - * / // % **, the names in
    `_CONSTANTS` and calls of `_FUNCTIONS`; anything else is refused, named."""
    if isinstance(node, ast.Expression):
        return evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = evaluate(node.left), evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right))
        return _bounded(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _bounded(_FUNCTIONS[node.func.id](*(evaluate(a) for a in node.args)))
    if isinstance(node, ast.Name):
        raise ToolInputError(f"Unknown name {node.id!r} in the expression.")
    raise ToolInputError(
        f"The expression may hold numbers, + - * / // % ** and the functions "
        f"{', '.join(sorted(_FUNCTIONS))}; not {ast.unparse(node)!r}."
    )


def eval_expression(arguments: dict[str, Any]) -> str:
    expression = str(arguments.get("expression") or "").strip()
    if len(expression) > MAX_EXPRESSION:
        raise ToolInputError(f"expression is longer than {MAX_EXPRESSION} characters")
    try:
        value = evaluate(ast.parse(expression.replace("^", "**"), mode="eval"))
    except SyntaxError:
        raise ToolInputError(f"{expression!r} is not an arithmetic expression.") from None
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except (OverflowError, ValueError, TypeError) as error:
        raise ToolError(f"The expression cannot be computed: {error}") from None
    except (RecursionError, MemoryError):
        raise ToolInputError("The expression is nested too deeply.") from None
    if isinstance(value, complex):
        raise ToolError("The result is not a real number.")
    if isinstance(value, float):
        return f"{value:.15g}"
    return str(value)


MATHS = ToolProvider(
    id="maths",
    label="Maths",
    description="A tool for arithmetic.",
    icon="🧮",
    background="#E0F2FE",
    tools=(
        Tool(
            provider="maths",
            name="eval_expression",
            label="Evaluate Expression",
            description=(
                "The value of an arithmetic expression, e.g. (2 + 3) * 4 or sqrt(2) / 2. "
                "Use it for any calculation."
            ),
            invoke=eval_expression,
            parameters=(
                ToolParameter(
                    "expression",
                    "string",
                    "Expression",
                    "The arithmetic expression to compute.",
                    required=True,
                ),
            ),
        ),
    ),
)

PROVIDERS: dict[str, ToolProvider] = {provider.id: provider for provider in (TIME, MATHS)}


def provider_key(provider_id: Any) -> str:
    """A tool provider's id as this server names it: Dify 1.x's plugin ids of its built-in
    providers (`langgenius/time/time`) become the provider's own (`time`)."""
    text = str(provider_id or "")
    return text.rsplit("/", 1)[-1] if text.startswith("langgenius/") else text


def served(
    provider_type: Any, provider_id: Any, tool_name: Any, where: str
) -> tuple[ToolProvider, Tool]:
    """The built-in tool a config names (an agent's tool, a workflow's tool node); a
    `ToolInputError` naming `where` and what is served otherwise."""
    if (provider_type or "builtin") != "builtin":
        raise ToolInputError(
            f"{where}.provider_type: {provider_type!r} tools are not served; the built-in ones "
            f"are ({', '.join(PROVIDERS)}), and for an agent a workspace's custom API tools (api)"
        )
    provider = PROVIDERS.get(provider_key(provider_id))
    if provider is None:
        raise ToolInputError(
            f"{where}.provider_id: no built-in tool provider {provider_id!r}; "
            f"the providers: {', '.join(PROVIDERS)}"
        )
    tool = provider.tool(str(tool_name or ""))
    if tool is None:
        raise ToolInputError(
            f"{where}.tool_name: {provider.id} has no tool {tool_name!r}; its "
            f"tools: {', '.join(t.name for t in provider.tools)}"
        )
    return provider, tool


def find(provider_id: str, tool_name: str) -> Tool | None:
    """The built-in tool `tool_name` of `provider_id` (Dify's ids; None when unknown)."""
    provider = PROVIDERS.get(provider_id)
    return provider.tool(tool_name) if provider else None
