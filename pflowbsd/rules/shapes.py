"""Rule bodies parsed once per shape: the same spec as the grammar, faster.

A large ruleset repeats a few rule shapes that differ only in their literals
(addresses, numbers, quoted strings).  `parse_rule_cached` cuts those out of
the text (a shape key and a list of slot values), parses the first rule of a
shape with the pyparsing grammar (pflowbsd.rules.grammar), and builds later
rules of that shape by putting their slot values into a copy of that spec.
It is only trusted where that is sure to give what the grammar gives: every
slot value of the first rule must appear exactly once among the spec's leaves
(a literal a parse action changed, such as `proto 6` read as tcp, fails that),
and the second rule of a shape is parsed by the grammar too and must equal
the built one; otherwise the shape always takes the grammar.  Results are
equal to parse_rule_text's by construction and by the tests.
"""
import ipaddress
import re
from typing import Any

from pflowbsd.rules.grammar import Spec, parse_rule_text

# An IPv4 address (a network when /N follows), a decimal number, or a
# quoted string without escapes, standing alone (not part of a word,
# a range `a:b`, `a-b`, an IPv6 address or a mask).
SLOT = re.compile(r'"([^"\\]*)"|(?<![\w.:/%-])(\d+\.\d+\.\d+\.\d+(?:/\d+)?|\d+)'
                  r'(?![\w.:/%-])')


MAX_SHAPES = 10000     # a bound on the cache, whatever is read


def _slot(m: re.Match[str]) -> tuple[str, object] | None:
    """(kind in the shape key, the value the spec holds) for one literal."""
    if m.group(1) is not None:
        return "Q", m.group(1)
    word = m.group(2)
    if "." not in word:
        return ("N", int(word)) if len(word) <= 20 else None  # past 64 bits: the grammar's
    addr, _, bits = word.partition("/")
    try:
        ip = ipaddress.IPv4Address(addr)
    except ValueError:
        return None
    if str(ip) != addr:
        return None
    if not bits:
        return "A", addr
    if len(bits) > 2 or int(bits) >= 32:
        return None
    net = ipaddress.ip_network(word, strict=False)
    if str(net.network_address) != addr:
        return None
    return "A/" + bits, word


def shape_of(text: str) -> tuple[str, list[object]]:
    parts, values, pos = [], [], 0
    for m in SLOT.finditer(text):
        slot = _slot(m)
        if slot is None:
            continue
        parts.append(text[pos:m.start()] + "\0" + slot[0] + "\0")
        values.append(slot[1])
        pos = m.end()
    parts.append(text[pos:])
    return "".join(parts), values


def _leaves(x: Any, out: list[object]) -> None:
    if isinstance(x, dict):
        for v in x.values():
            _leaves(v, out)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _leaves(v, out)
    elif type(x) in (int, str):
        out.append((type(x), x))


def _put(x: Any, new: dict[object, object]) -> Any:
    """A copy of x with the leaves in new replaced."""
    if isinstance(x, dict):
        return {k: _put(v, new) for k, v in x.items()}
    if isinstance(x, list):
        return [_put(v, new) for v in x]
    if isinstance(x, tuple):
        items = [_put(v, new) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if type(x) in (int, str):
        return new.get((type(x), x), x)
    return x


class ShapeCache:
    """Specs by shape: (first spec, its slot values, trusted?)."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Spec, list[object], bool] | None] = {}
        self.enabled = True     # False: every rule through the grammar

    def parse(self, text: str) -> Spec:
        if not self.enabled or "%" in text or "\\" in text:
            return parse_rule_text(text)
        key, values = shape_of(text)
        if key not in self.shapes:
            if len(self.shapes) >= MAX_SHAPES:
                self.shapes.clear()
            spec = parse_rule_text(text)
            leaves: list[object] = []
            _leaves(spec, leaves)
            keys = [(type(v), v) for v in values]
            ok = len(set(keys)) == len(keys) and all(
                leaves.count(k) == 1 for k in keys)
            self.shapes[key] = (spec, values, False) if ok else None
            return _put(spec, {})
        entry = self.shapes[key]
        if entry is None:
            return parse_rule_text(text)
        spec, first, trusted = entry
        new: dict[object, object] = {(type(a), a): b
                                     for a, b in zip(first, values)}
        if len(set(map(repr, values))) != len(values):
            return parse_rule_text(text)
        built = _put(spec, new)
        if not trusted:
            real = parse_rule_text(text)
            self.shapes[key] = (spec, first, True) if real == built else None
            return real
        return built


CACHE = ShapeCache()


def parse_rule_cached(text: str) -> Spec:
    """parse_rule_text(text), through the shared ShapeCache."""
    return CACHE.parse(text)
