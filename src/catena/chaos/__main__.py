import sys

from catena.chaos.cli import main

sys.exit(main())
