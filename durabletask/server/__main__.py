import sys

from durabletask.server.cli import main

sys.exit(main())
