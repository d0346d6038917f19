"""dropbox-sync: upload CSV files dropped in inbox folders to Infiniti's import."""

__version__ = "0.1.0"
