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
)

PF = [c for c in cases("pf[0-9]*.in") + cases("pfopt*.in") if "." not in c]
LOADED = [c for c in PF if (REGRESS / f"{c}.loaded").exists()]
OPTIMIZED = [c for c in PF if (REGRESS / f"{c}.optimized").exists()]
# pfailN.ok cases that name no stdin:LINE fail when loading, not parsing.
PFAIL = [c for c in cases("pfail*.in")
         if "stdin:" in (REGRESS / f"{c}.ok").read_text()]


# Each reason is the cause (checked by strict xfail: fixing it fails the run).
EXPAND_XFAIL = {
    "pf113": "pfctl's optimizer turns the 10-address { } list of a loaded "
             "anchor into an __automatic_ table (TABLE_THRESHOLD 6); the "
             "optimizer is not modelled",
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
    assert diff(reachable(rs.rules, rs.loaded), printed(stem).rules) is None


@pytest.mark.parametrize("stem", marked(LOADED, NUMBER_XFAIL))
def test_numbering_matches_loaded(stem):
    rs = expanded(stem)
    ours = reachable(rs.rules, rs.loaded)
    assert diff(ours, loaded(stem).rules, with_nr=True) is None


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
