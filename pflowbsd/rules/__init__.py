"""pf rules: reading a ruleset, and choosing states to export by their rule.

The modules import one way, each only from those before it: hosts (the terms:
hosts, ports, lists), grammar (one rule), model (Rule, Ruleset, the `pfctl -sr
-vv` listing), lexer (pf.conf tokens), check (pfctl's refusals), expand (lists
and numbers), optimize (pfctl's optimizer: its table pass), pfconf (a
pf.conf), load (either text), show (`pflowbsd rules`).
select (the `select` tests and the Selector) needs none of them at run time, so
the configuration imports it without loading the grammar.
"""
