import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import os

from hypothesis import HealthCheck, settings

# dev: quick local runs; ci: more examples (selected by .ci/run).
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_sessionstart(session):
    # kb/ is checked once before any test decides a case: a comparison with an undeclared
    # point or a rule reading an undefined atom would otherwise silently never fire.
    from covkb.kbcheck import problems

    found = problems()
    if found:
        raise SystemExit("kb/ self-check failed:\n" + "\n".join(found))
