"""Entry point: ``python export/build_repo.py --target cpu --model CARD --out DIR`` = ``cityserve repo build``."""

import sys

from cityserve.cli import main

if __name__ == "__main__":
    sys.exit(main(["repo", "build"] + sys.argv[1:]))
