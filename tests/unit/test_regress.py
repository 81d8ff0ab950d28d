"""pfctl's own regression data: our expansion, numbering and listing reader
against what OpenBSD's pfctl printed (tests/fixtures/pfctl-regress)."""
import pytest

from tests.support.regress import (
    REGRESS,
    cases,
    diff,
    expanded,
    loaded,
    pfctl_messages,
    printed,
    reachable,
    rejected,
    rejected_line,
    sed_automatic,
)

PF = [c for c in cases("pf[0-9]*.in") + cases("pfopt*.in") if "." not in c]
LOADED = [c for c in PF if (REGRESS / f"{c}.loaded").exists()]
OPTIMIZED = [c for c in PF if (REGRESS / f"{c}.optimized").exists()]
# pfailN.ok cases that name no stdin:LINE fail when loading, not parsing.
PFAIL = [c for c in cases("pfail*.in")
         if "stdin:" in (REGRESS / f"{c}.ok").read_text()]


# Each reason is the cause (checked by strict xfail: fixing it fails the run).
EXPAND_XFAIL: dict[str, str] = {}
# pfN.optimized (-o basic) against our table pass (optimize=True): the
# optimizer's other passes are not modelled.  Each case was sorted by what its
# rules show: the same rules in another order (reorder_rules, pass 3), or
# fewer rules, each one of ours (remove_identical_rules, pass 1, which runs
# before the table pass and so also decides pf14's and pf60's tables).
PASS1 = "remove_identical_rules (optimizer pass 1) is not modelled"
PASS3 = "reorder_rules (optimizer pass 3, skip steps) is not modelled"
OPTIMIZE_XFAIL = {
    **dict.fromkeys(("pf2", "pf5", "pf12", "pf48", "pf87"), PASS3),
    **dict.fromkeys(("pf3", "pf4", "pf7", "pf10", "pf13", "pf14", "pf15",
                     "pf27", "pf31", "pf32", "pf40", "pf44", "pf49", "pf60",
                     "pf68", "pf81", "pf82", "pf88", "pf91", "pf92",
                     "pf100"), PASS1),
}
NUMBER_XFAIL = {
    "pf35": "pf35.loaded lists another ruleset than pf35.in (stale)",
}


def marked(stems, xfail):
    return [pytest.param(s, marks=pytest.mark.xfail(reason=xfail[s],
                                                    strict=True))
            if s in xfail else s for s in stems]


@pytest.mark.parametrize("stem", marked(PF, EXPAND_XFAIL))
def test_expansion_matches_ok(stem):
    rs = expanded(stem)
    assert diff(sed_automatic(reachable(rs.rules, rs.loaded)),
                sed_automatic(printed(stem).rules)) is None


@pytest.mark.parametrize("stem", marked(LOADED, NUMBER_XFAIL))
def test_numbering_matches_loaded(stem):
    rs = expanded(stem)
    ours = reachable(rs.rules, rs.loaded)
    assert diff(ours, loaded(stem).rules, with_nr=True) is None


@pytest.mark.parametrize("stem", marked(OPTIMIZED, OPTIMIZE_XFAIL))
def test_table_pass_matches_optimized(stem):
    """pf114: fifteen rules one table, and `$nr` numbered after it."""
    rs = expanded(stem, optimize=True)
    ours = sed_automatic(reachable(rs.rules, rs.loaded))
    assert diff(ours, sed_automatic(loaded(stem, "optimized").rules),
                with_nr=True) is None


@pytest.mark.parametrize("stem", LOADED)
def test_loaded_parses(stem):
    rs = loaded(stem)
    assert rs.warnings == []
    assert len(rs.rules) == (REGRESS / f"{stem}.loaded").read_text().count("\n@") \
        + (REGRESS / f"{stem}.loaded").read_text().startswith("@")


@pytest.mark.parametrize("stem", OPTIMIZED)
def test_optimized_parses(stem):
    rs = loaded(stem, "optimized")
    assert rs.warnings == []
    assert all(r.nr is not None for r in rs.rules)


@pytest.mark.parametrize("stem", PFAIL)
def test_pfail_rejected_at_line(stem):
    want, got = rejected_line(stem)
    assert want is not None and got == want


@pytest.mark.parametrize("stem", PFAIL)
def test_pfail_message_is_one_pfctl_prints(stem):
    """pfctl prints several messages for one error; ours is one of them."""
    _, (line, message) = rejected(stem)
    assert message in pfctl_messages(stem)
