"""A reader of PromQL expressions good enough to check which series and labels they use.

promtool is not installed here, so this does not parse PromQL's full grammar. It scans an
expression and returns its vector selectors (metric name and label matchers) and the label
lists of its grouping clauses (`by`, `without`, `on`, `ignoring`, `group_left/right`),
and refuses what it does not know: an unbalanced bracket, an unterminated string, a call
of a function PromQL does not have, a matcher that is not `label op "value"`. Grafana's
variables (`$__rate_interval`, `$tenant`) are accepted where Grafana substitutes them: a
range's duration and a label value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTIONS = frozenset(
    {
        *("abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp"),
        *("clamp_max", "clamp_min", "count_over_time", "day_of_month", "day_of_week"),
        *("days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile"),
        *("holt_winters", "hour", "idelta", "increase", "irate", "label_join"),
        *("label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time"),
        *("min_over_time", "minute", "month", "predict_linear", "present_over_time"),
        *("quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort"),
        *("sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time"),
        *("time", "timestamp", "vector", "year"),
    }
)
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_DURATION = re.compile(r"\$\w+|(\d+(ms|s|m|h|d|w|y))+")


class PromQLError(ValueError):
    """The expression is not one this reader accepts."""


@dataclass
class Selector:
    """One vector selector: `name{label op "value", ...}`."""

    name: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Expression:
    """What an expression reads."""

    selectors: list[Selector]
    grouping: set[str]


def _matchers(body: str) -> list[tuple[str, str, str]]:
    found = []
    for part in _split_commas(body):
        if not part.strip():
            continue
        match = _MATCHER.fullmatch(part)
        if match is None:
            raise PromQLError(f"not a label matcher: {part!r}")
        found.append((match[1], match[2], match[3]))
    return found


def _split_commas(body: str) -> list[str]:
    parts, current, quoted, i = [], "", False, 0
    while i < len(body):
        char = body[i]
        if char == "\\" and quoted:
            current += body[i : i + 2]
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    return [*parts, current]


def _closing(expr: str, start: int, opening: str, closing: str) -> int:
    """The index of the bracket closing the one at `start` (strings skipped)."""
    depth, i = 0, start
    while i < len(expr):
        char = expr[i]
        if char == '"':
            end = expr.find('"', i + 1)
            while end != -1 and expr[end - 1] == "\\":
                end = expr.find('"', end + 1)
            if end == -1:
                raise PromQLError("unterminated string")
            i = end
        elif char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise PromQLError(f"unbalanced {opening!r}")


class _Scanner:
    """One pass over an expression, collecting selectors and grouping labels."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.i = 0
        self.selectors: list[Selector] = []
        self.grouping: set[str] = set()

    def run(self) -> Expression:
        while self.i < len(self.expr):
            char = self.expr[self.i]
            if char.isspace() or char in "()+-*/%^<>=!,":
                self.i += 1
            elif char == '"':  # a string argument (label_replace, count_values): skipped
                self._string()
            elif char == "[":
                self._range()
            elif char.isdigit() or char == ".":
                self._number()
            elif char == "{":  # a selector without a metric name
                self.selectors.append(Selector("", self._braces()))
            else:
                self._word()
        return Expression(self.selectors, self.grouping)

    def _rest(self) -> str:
        """What follows the position, leading blanks skipped (the position moves past them)."""
        while self.i < len(self.expr) and self.expr[self.i].isspace():
            self.i += 1
        return self.expr[self.i :]

    def _string(self) -> None:
        match = re.match(r'"(?:[^"\\]|\\.)*"', self.expr[self.i :])
        if match is None:
            raise PromQLError("unterminated string")
        self.i += match.end()

    def _range(self) -> None:
        end = _closing(self.expr, self.i, "[", "]")
        window = self.expr[self.i + 1 : end].split(":")[0].strip()
        if not _DURATION.fullmatch(window):
            raise PromQLError(f"not a range: [{self.expr[self.i + 1 : end]}]")
        self.i = end + 1

    def _number(self) -> None:
        number = re.match(r"[0-9.]+(e[+-]?\d+)?", self.expr[self.i :])
        assert number is not None
        self.i += number.end()

    def _braces(self) -> list[tuple[str, str, str]]:
        """The matchers of the `{...}` at the position."""
        end = _closing(self.expr, self.i, "{", "}")
        matchers = _matchers(self.expr[self.i + 1 : end])
        self.i = end + 1
        return matchers

    def _word(self) -> None:
        ident = _IDENT.match(self.expr, self.i)
        if ident is None:
            raise PromQLError(f"unexpected {self.expr[self.i]!r} at {self.i}")
        word, self.i = ident[0], ident.end()
        rest = self._rest()
        if word in GROUPING:
            if rest.startswith("("):
                end = _closing(self.expr, self.i, "(", ")")
                labels = self.expr[self.i + 1 : end].split(",")
                self.grouping |= {label.strip() for label in labels if label.strip()}
                self.i = end + 1
        elif word == "offset":
            duration = _DURATION.match(rest)
            if duration is None:
                raise PromQLError("offset without a duration")
            self.i += duration.end()
        elif word in FUNCTIONS | AGGREGATIONS | KEYWORDS:
            pass
        elif rest.startswith("("):
            raise PromQLError(f"unknown function {word}()")
        else:
            self.selectors.append(Selector(word, self._braces() if rest.startswith("{") else []))


def parse(expr: str) -> Expression:
    """The selectors and grouping labels of `expr`; PromQLError for what is not PromQL."""
    for opening, closing in ("()", "{}", "[]"):
        if expr.count(opening) != expr.count(closing):
            raise PromQLError(f"unbalanced {opening}{closing}")
    return _Scanner(expr).run()
