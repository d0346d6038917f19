"""Email for the people who run it: failed files, held inboxes, a silent SIS export;
what the notifier remembers, and the one SMTP sender.
"""
