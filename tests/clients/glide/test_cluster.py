"""glide_cluster.py: a GlideClusterClient sends RL.SLIDING and RL.ALL's
first-key form to their keys' node (no MOVED), and gets the server's
CROSSSLOT for keys in two slots."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from harness import check, eq, finish, printed, run_script  # noqa: E402
from roundtrips import counts  # noqa: E402


@check("glide_cluster.py prints what its comments say, each call sent to its key's node")
def _():
    # GLIDE logs the error replies it gets as warnings, on stdout: not the snippet's prints.
    out = [line for line in run_script("glide_cluster.py").splitlines() if "logger_core" not in line]
    eq(out, printed("glide_cluster.py"), "glide_cluster.py's output")
    seen = counts("RL.ALL")
    eq((seen["moved"], seen["ask"]), (0, 0), "MOVED and ASK replies (a call sent to the wrong node)")
    eq(seen["calls"] + seen["rejected"], 2, "RL.ALL calls: the allowed one, the CROSSSLOT one")


finish()
