"""glide_api.py: the API limit per user through Valkey GLIDE, the same
decisions and headers as redis-py's api.py."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from harness import check, eq, finish, printed, run_script  # noqa: E402


@check("glide_api.py prints what its comments say: 10 allowed, the 11th denied with Retry-After 60")
def _():
    eq(run_script("glide_api.py").splitlines(), printed("glide_api.py"), "glide_api.py's output")


finish()
