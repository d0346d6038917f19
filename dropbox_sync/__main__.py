import sys

from dropbox_sync.cli import entry

sys.exit(entry())
