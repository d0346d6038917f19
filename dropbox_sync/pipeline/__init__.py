"""The path of one file, from inbox to archive: discover -> settle -> claim -> prepare ->
upload -> record -> archive, and the runner that works every inbox of a config.

``runner`` wires the inboxes; ``worker`` schedules one inbox and runs each file through
the steps; each step lives in one module that every command calls.
"""
