"""report.html: the page in each inbox that tells office staff what became of their files."""
