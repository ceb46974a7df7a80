"""Small truths a reader relies on: a name is never split at its own hyphen, a criterion
met just outside its window names the window's start, and on a not-covered decision
every unknown criterion is marked for a resubmission."""

import pytest

from cases import DROP, V2024, V2025, case, decide
from covkb import case as cases
from covkb.explain import as_text, explain


@pytest.mark.parametrize("width", range(40, 101))
def test_explain_never_wraps_ide_cel_at_its_hyphen(width):
    # "ide-cel", "cilta-cel" are names (SPEC §1); a line ending "ide-" reads as another word
    text = as_text(explain(cases.from_object(case(prior_cell_therapies=["ide-cel", "cilta-cel"]))), width)
    assert not any(line.rstrip().endswith(("ide-", "cilta-")) for line in text.splitlines())
