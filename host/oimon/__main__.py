import sys

from oimon.cli import main

sys.exit(main())
