import sys

from emdstream.tools.cli import main

sys.exit(main())
