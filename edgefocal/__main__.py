import sys

from edgefocal.cli import main

sys.exit(main())
