"""A ruleset from text that is either a saved `pfctl -sr -vv` listing or a pf.conf.

`pflowbsd rules FILE` takes both: a listing has `@N` rule numbers at the start
of its lines, which a pf.conf never has, so that mark decides which reader runs
(pflowbsd.rules.model.parse_listing or pflowbsd.rules.pfconf.parse_pfconf).
"""
import re
from collections.abc import Mapping

from pflowbsd.rules.ifa import IfTable
from pflowbsd.rules.lexer import ReadFile
from pflowbsd.rules.model import Ruleset, parse_listing
from pflowbsd.rules.pfconf import parse_pfconf

LISTING_MARK = re.compile(r"^@\d+(\(\d+\))? ", re.M)


def load_ruleset(text: str, name: str, read_file: ReadFile | None = None,
                 defines: Mapping[str, str] | None = None,
                 interfaces: IfTable | None = None) -> Ruleset:
    """A listing if the text has @N lines, else a pf.conf (read against the
    host's interfaces, when given)."""
    if LISTING_MARK.search(text):
        return parse_listing(text, name)
    return parse_pfconf(text, name, read_file=read_file, defines=defines,
                        interfaces=interfaces)
