#!/usr/bin/env python3
"""Per-file table of cargo-mutants runs (docs/testing-alerts.md):

    scripts/mutants-report.py mutants.out/outcomes.json [more runs ...]

prints one markdown row per mutated file: caught / missed / unviable / timeout. A mutant
that several runs tested counts with the outcome of the last run given."""
import collections, json, sys

KINDS = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable",
         "Timeout": "timeout"}
# A mutant tested again by a later run (say, after new tests) counts with its last outcome.
last = {}
for path in sys.argv[1:]:
    for o in json.load(open(path))["outcomes"]:
        m = o["scenario"]
        if not isinstance(m, dict) or "Mutant" not in m:
            continue
        m = m["Mutant"]
        last[m["name"]] = (m["file"], KINDS.get(o["summary"], o["summary"]))
rows = collections.defaultdict(collections.Counter)
for file, kind in last.values():
    rows[file][kind] += 1
cols = ["caught", "missed", "unviable", "timeout"]
print("| file | " + " | ".join(cols) + " |")
print("|---|" + "---:|" * len(cols))
tot = collections.Counter()
for f in sorted(rows):
    tot.update(rows[f])
    print(f"| `{f}` | " + " | ".join(str(rows[f][c]) for c in cols) + " |")
print("| **all** | " + " | ".join(f"**{tot[c]}**" for c in cols) + " |")
