import sys

from bnc.cli import main

sys.exit(main())
