import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Hermetic: every run gets its own home, cache and no inherited decision log, so no test reads
# or writes the user's ~/.cache and two suites can run side by side. Set before anything
# imports covkb, and inherited by every subprocess a test starts.
# One per run: pytest-xdist's workers inherit the controller's, so the compiled engine is
# built once per run and kept in that run's cache, not once per worker.
_OWN = "COVKB_TEST_HOME" not in os.environ
_HOME = Path(tempfile.mkdtemp(prefix="covkb-tests-")) if _OWN else Path(os.environ["COVKB_TEST_HOME"])
os.environ["COVKB_TEST_HOME"] = str(_HOME)
for _name in ("home", "cache"):
    (_HOME / _name).mkdir(exist_ok=True)
os.environ["HOME"] = str(_HOME / "home")
os.environ["XDG_CACHE_HOME"] = str(_HOME / "cache")
os.environ["COVKB_CACHE"] = str(_HOME / "cache" / "covkb")
for _name in ("COVKB_LOG", "COVKB_PUBLIC_API"):  # COVKB_KB stays: tools/mutants.py sets it
    os.environ.pop(_name, None)
# The many covkb processes the tests start read their compiled modules from __pycache__
# (git-ignored) rather than compiling every module again: 1 s less a start where the
# environment says not to write bytecode.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# dev (the default run): a short run of every property. ci (the slow profile, selected by
# .ci/run with HYPOTHESIS_PROFILE=ci): many more examples. No deadline in either: a
# property's verdict never depends on how busy the machine is.
# Health checks about generation speed and filtering say nothing about the policy, and on a
# busy machine they fail by chance: they are off in both profiles.
_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("dev", max_examples=10, deadline=None, derandomize=True,
                          suppress_health_check=_QUIET)
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collection_modifyitems(items):
    # Every Hypothesis test is a property: the slow profile selects them with -m property.
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)


def pytest_sessionstart(session):
    # kb/ is checked once before any test decides a case: a comparison with an undeclared
    # point or a rule reading an undefined atom would otherwise silently never fire.
    from covkb.analysis.kbcheck import problems

    found = problems()
    if found:
        raise SystemExit("kb/ self-check failed:\n" + "\n".join(found))


def pytest_sessionfinish(session, exitstatus):
    import shutil

    if _OWN:  # the process that made it, after its workers
        shutil.rmtree(_HOME, ignore_errors=True)


# A pytest internal error must still name the test it happened in.
_RUNNING: list[str] = []


def pytest_runtest_logstart(nodeid, location):
    _RUNNING[:] = [nodeid]


def pytest_internalerror(excrepr, excinfo):
    if _RUNNING:
        print(f"INTERNALERROR while running {_RUNNING[0]}")


@pytest.fixture(autouse=True)
def _sources_of_this_test_only():
    # A command names each fact's FHIR source through a context variable, set once per
    # process by the command that read the case. Tests run many commands in one process
    # (typer's CliRunner): each test starts with none, and leaves none to the next.
    from covkb.results.result import SOURCES

    token = SOURCES.set({})
    yield
    SOURCES.reset(token)
