"""`python -m bench`: the benchmark suite (bench/suite.py), run from the repository's root."""

import sys

from bench.suite import main

sys.exit(main())
