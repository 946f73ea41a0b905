import sys

from verify.report.core import main

sys.exit(main())
