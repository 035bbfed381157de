#!/usr/bin/env python3
# Writes the given text files as JSONL {"text": ...} rows of WIDTH characters (newlines become spaces),
# cut between characters: real text for the training benchmarks.
#   python3 bench/text_rows.py WIDTH FILE... > rows.jsonl
import json
import sys

width = int(sys.argv[1])
text = " ".join(open(path, encoding="utf-8").read().replace("\n", " ") for path in sys.argv[2:])
for start in range(0, len(text), width):
    print(json.dumps({"text": text[start:start + width]}))
