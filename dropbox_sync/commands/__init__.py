"""The commands that are more than a call into the pipeline: check, preview, diff,
retry, history and demo. ``cli.py`` parses arguments and maps errors to exit codes.
"""
