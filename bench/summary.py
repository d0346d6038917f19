"""Print the results run_all collected (JSON lines from common.Report.save) as one table.

python bench/summary.py RESULTS.jsonl [--markdown]
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    args = sys.argv[1:]
    markdown = "--markdown" in args
    paths = [a for a in args if not a.startswith("--")]
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    rows = [
        (r["name"], row["figure"], row["goal"], row["measured"], row["verdict"]) for r in records for row in r["rows"]
    ]
    headers = ("benchmark", "figure", "goal", "measured", "verdict")
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in rows:
            print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    else:
        widths = [max(len(str(x[i])) for x in [headers, *rows]) for i in range(len(headers))]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        print(line)
        for number, row in enumerate([headers, *rows]):
            print("| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
            if number == 0:
                print(line)
        print(line)
    for record in records:
        print(f"{record['name']}: {record['seconds']:.0f} s" + "".join(f"\n    {n}" for n in record["notes"]))
    misses = sum(1 for row in rows if row[4] == "MISS")
    print(f"{len(rows)} figures, {misses} goal(s) missed")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
