"""Results are records: every number the README and docs state about a run is in results/*.json.

A record is what a run wrote (train.py's metrics.json, the bench's JSON) with where it came
from: the exact command, the commit, the CPU as /proc/cpuinfo names it, the threads and the
backend. A figure quoted from elsewhere (the paper's Table 2) names its "source" instead of a
command. The tables in README.md and docs/*.md are generated from the records, between the
markers `<!-- records: NAME -->` and `<!-- /records -->`, and a test regenerates them.

    python -m gr_numpy.tools.records add RUN_FOLDER NAME   # results/NAME.json from a run
    python -m gr_numpy.tools.records tables                # rewrite the tables from the records
    python -m gr_numpy.tools.records tables --check        # exit 1 if a table differs
"""

import os
import platform
import re
import subprocess


def cpu_model():
    """The CPU's model name, as /proc/cpuinfo (else the platform) calls it."""
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), flags=re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit(folder=None):
    """The git commit of the checkout this code runs from, "+changes" if its files differ from
    it, or "unknown" outside a git checkout."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
