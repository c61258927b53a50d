"""``aihf compare`` (aihf.eval.compare) under the path the commands in docs/results.md name."""

import sys

from aihf.eval.compare import main

if __name__ == "__main__":
    sys.exit(main())
