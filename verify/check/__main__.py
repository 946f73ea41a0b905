import sys

from verify.check.cli import main

sys.exit(main())
