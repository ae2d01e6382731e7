import sys

from webapp.cli.main import main

sys.exit(main())
