#!/usr/bin/python3
"""Writes the demo's bundled data: data/shapes.jsonl (what the base model is pretrained on: the shape of
24 objects) and data/colors.jsonl (what ReMix then teaches it: their colours), in Alpaca format."""
import json
import os
import random

OBJECTS = ["apple", "banana", "sky", "grass", "snow", "coal", "lemon", "cherry", "ocean", "pumpkin", "violet",
           "chocolate", "lime", "salmon", "cloud", "tomato", "mint", "plum", "sand", "ink", "brick", "pearl",
           "olive", "flamingo"]
COLORS = ["red", "yellow", "blue", "green", "white", "black", "yellow", "red", "blue", "orange", "purple", "brown",
          "green", "pink", "white", "red", "green", "purple", "beige", "black", "red", "white", "green", "pink"]
SHAPES = ["round", "long", "wide", "flat", "soft", "hard", "oval", "small", "deep", "big", "thin", "square",
          "round", "long", "fluffy", "round", "leafy", "oval", "grainy", "liquid", "square", "round", "oval", "tall"]
QUESTIONS = ["What {a} is the {o}?", "Tell me the {a} of the {o}.", "Which {a} does the {o} have?",
             "Name the {a} of the {o}.", "Describe the {o}'s {a}.", "I wonder what {a} the {o} is."]


def write(path, attribute, values, seed):
    rows = [{"instruction": q.format(a=attribute, o=o), "output": f"The {o} is {v}."}
            for o, v in zip(OBJECTS, values) for q in QUESTIONS]
    random.Random(seed).shuffle(rows)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
    write(os.path.join(data, "colors.jsonl"), "color", COLORS, 7)
    write(os.path.join(data, "shapes.jsonl"), "shape", SHAPES, 8)
