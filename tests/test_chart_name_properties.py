"""Properties of reading names as charts write them (reading 22–27 "Names as charts write them").

A name's variants — letter case, Unicode dashes and spaces, route/formulation/phase/salt
words after it — always decide alike; and reading a name from its parts never turns a
pending into a decision unless every part is a name the knowledge base lists.
"""

from hypothesis import given, strategies as st

from cases import case, decide_all, statuses

# Names listed whole in kb/names.lp, of each kind (reading 21, 22's examples).
LISTED = ["lenalidomide", "Revlimid", "bortezomib", "Velcade", "Darzalex Faspro", "isatuximab-irfc",
          "Sarclisa", "carfilzomib", "Ninlaro", "pomalidomide", "dexamethasone", "melphalan",
          "Cytoxan", "Dara", "Len", "Pom", "VRd", "KRd", "D-VRd", "DPd", "IsaPd", "Isa-VRd",
          "Dara-KRd", "Len/dex", "Elo-Pd", "lenalidomide + dexamethasone", "teclistamab",
          "Abecma", "ide-cel", "Carvykti", "cilta-cel", "Kymriah", "KarMMa-3", "CARTITUDE-4",
          "MajesTEC-1", "ASCT", "autologous stem cell transplant"]
DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
SPACES = " \u00a0\u2002\u2003\u2009\u202f\u3000"
SUFFIXES = ["SC", "IV", "maintenance", "induction", "consolidation", "citrate", "hydrochloride"]


def _letter_case_tells(name: str) -> bool:
    # the dexamethasone `d` and the daratumumab `D` are told apart by letter case (reading 24)
    return any(c in "dD" for c in name) and name not in ("dexamethasone", "daratumumab")


@st.composite
def variants(draw):
    """A listed name and a variant of it: letter case, dashes, spaces, a qualifier after it."""
    name = draw(st.sampled_from(LISTED))
    variant = name
    if not _letter_case_tells(name) or " " in name and len(name) > 12:
        variant = draw(st.sampled_from([variant, variant.upper(), variant.lower(), variant.title()]))
    variant = "".join(draw(st.sampled_from(DASHES)) if c == "-" and draw(st.booleans()) else
                      draw(st.sampled_from(SPACES)) if c == " " else c for c in variant)
    if draw(st.booleans()):
        variant = f"{variant}{draw(st.sampled_from(SPACES))}{draw(st.sampled_from(SUFFIXES))}"
    return name, variant


def _placed(name: str) -> dict:
    """A case with the name in every field a name may be written in."""
    return case(prior_lines=[[name], ["Rd"]], prior_cell_therapies=[name], clinical_trials=[name],
                concurrent_therapies=[{"agent": name, "purpose": "lymphodepletion"}])


@given(variants())
def test_a_names_variants_decide_alike(pair):
    name, variant = pair
    plain, varied = decide_all([_placed(name), _placed(variant)])
    assert (varied.decision, statuses(varied)) == (plain.decision, statuses(plain))


# Pieces a chart may join into one name: listed names, codes, and pieces no table holds.
PIECES = ["Isa", "Dara", "Elo", "Len", "dex", "Pom", "Cy", "Flu", "V", "R", "d", "D", "K", "C", "P",
          "T", "X", "M", "VRd", "Rd", "Kd", "lenalidomide", "bortezomib", "Velcade", "ASCT",
          "Q", "zz", "mab", "Velcaid", "7", "cel"]
LISTED_PIECES = {p for p in PIECES if p not in ("Q", "zz", "mab", "Velcaid", "7", "cel")}
JOINS = ["-", "/", " + ", " ", "", "\u2010"]


@st.composite
def joined(draw):
    pieces = draw(st.lists(st.sampled_from(PIECES), min_size=2, max_size=4))
    glue = [draw(st.sampled_from(JOINS)) for _ in pieces[1:]]
    return pieces, pieces[0] + "".join(g + p for g, p in zip(glue, pieces[1:]))


@given(joined())
def test_a_reading_from_parts_never_decides_without_every_part_listed(drawn):
    pieces, name = drawn
    # the name alone in a line, beside a line with no agent of any class
    result, *_ = decide_all([case(prior_lines=[[name], ["dexamethasone"]])])
    unrecognised = any(f"'{name}' is not a recognised name" in a for a in result.advisories)
    classes = {c: result.criteria[[x.id for x in result.criteria].index(c)].status for c in ("3a", "3b", "3c")}
    if not unrecognised:
        # read: as a listed name or from its parts, so no part may be one no table holds
        assert set(pieces) <= LISTED_PIECES
    else:
        # not read: every class it might hold stays open, and the request pends
        assert set(classes.values()) == {"unknown"} and result.decision == "pending"
