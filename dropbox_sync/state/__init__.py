"""What dropbox-sync remembers about the inboxes between runs, for people and tools:
the journal, status.json, the held/ folder; state files never stop the service.
"""
