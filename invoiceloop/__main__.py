"""`python -m invoiceloop ...`: the command line."""

import sys

from invoiceloop.cli import main

sys.exit(main())
