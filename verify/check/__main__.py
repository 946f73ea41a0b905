import sys

from verify.check.core import main

sys.exit(main())
