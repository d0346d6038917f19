import sys

from dropbox_sync.cli import main

sys.exit(main())
