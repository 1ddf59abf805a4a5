import sys

from catena.cli import main

sys.exit(main())
