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
