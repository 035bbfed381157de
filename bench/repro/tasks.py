"""Seeded generators for the reproduction suite's multi-task mixture and its base model's corpus.

Three tasks whose inputs look unlike each other, so that different tasks can want different experts:

- arithmetic (GSM8K stand-in): a word problem of 1-3 operations on small numbers, answered with the
  chain of steps and `#### N`; scored by `remora eval --task generate`, strict exact match.
  Template: "{name} has {a} {things}. {He} buys {b} more. ... How many {things} does {name} have now?"
  -> " {a} + {b} = {c}. ... #### {n}".
- facts (ARC-c stand-in): four-way multiple choice about the generated world's creatures, whose facts
  the base saw in pretraining (several phrasings each) but whose questions it never saw; scored by
  `--task choice` (acc, acc_norm). "What color is the {creature}?" / "Where does the {creature} live?"
  / "What does the {creature} eat?" with the true value and three others of the same attribute.
  Train, validation and test questions are about disjoint creatures.
- lists (HumanEval stand-in): a list transform written as `f(x) = ?`, answered with the value;
  `--task generate`, exact match of the whole answer. "reverse([3, 1, 4]) = ?" -> " [4, 1, 3]" (first,
  last, reverse, sort, max, min, len, sum over 3-5 digits).

The base corpus has every creature's facts, arithmetic facts ("7 + 5 = 12."), short stories in the
problems' style without questions, and list transforms in sentence form ("The reverse of [1, 2] is
[2, 1].") on lists that no split uses: the tasks' surface forms, not their problems or answer format.
No test problem appears in training, validation or the corpus: `check_disjoint` asserts it.
"""
import json
import random

COLORS = ["red", "blue", "green", "yellow", "white", "black", "purple", "orange"]
HOMES = ["forest", "desert", "river", "mountain", "cave", "meadow", "swamp", "island"]
FOODS = ["berries", "fish", "seeds", "leaves", "roots", "insects", "honey", "mushrooms"]
ATTRIBUTES = [("color", COLORS, "What color is the {c}?"), ("home", HOMES, "Where does the {c} live?"),
              ("food", FOODS, "What does the {c} eat?")]
FACT_FORMS = {
    "color": ["The {c} is {v}.", "A {c} has {v} fur.", "Every {c} you meet is {v}."],
    "home": ["The {c} lives in the {v}.", "You find the {c} in the {v}.", "The {v} is home to the {c}."],
    "food": ["The {c} eats {v}.", "A {c} likes {v} best.", "{v} are what the {c} feeds on."],
}
NAMES = ["Ada", "Ben", "Cora", "Dan", "Eva", "Finn", "Gia", "Hugo", "Iris", "Jon", "Kai", "Lea", "Max", "Nora",
         "Otto", "Pia", "Ravi", "Sara", "Tom", "Uma"]
THINGS = ["apples", "coins", "marbles", "books", "shells", "stamps", "pencils", "cards"]
LIST_OPS = ["first", "last", "reverse", "sort", "max", "min", "len", "sum"]


def creature_names(count, rng):
    """Made-up, pronounceable names: words the base can only know from the corpus."""
    onsets, vowels, codas = "bdfgklmnprstvz", "aeiou", ["", "n", "r", "x", "sh", "l"]
    names = set()
    while len(names) < count:
        names.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(2)) + rng.choice(codas))
    return sorted(names)


def make_world(creatures, rng):
    return {c: {attr: rng.choice(values) for attr, values, _ in ATTRIBUTES} for c in creatures}


def fact_question(creature, world, attr, values, template, rng):
    gold = world[creature][attr]
    choices = [gold] + rng.sample([v for v in values if v != gold], 3)
    rng.shuffle(choices)
    return {"question": template.format(c=creature), "choices": choices, "answerKey": "ABCD"[choices.index(gold)]}


def arithmetic_problem(rng):
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    pronoun = "She" if name in ("Ada", "Cora", "Eva", "Gia", "Iris", "Lea", "Nora", "Pia", "Sara", "Uma") else "He"
    total = rng.randint(2, 20)
    story, steps = [f"{name} has {total} {things}."], []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["buy"] + (["lose"] if total >= 2 else []) + (["double"] if total <= 15 else []))
        if op == "buy":
            n = rng.randint(1, 12)
            story.append(f"{pronoun} buys {n} more.")
            steps.append(f"{total} + {n} = {total + n}.")
            total += n
        elif op == "lose":
            n = rng.randint(1, total - 1)
            story.append(f"{pronoun} gives away {n}.")
            steps.append(f"{total} - {n} = {total - n}.")
            total -= n
        else:
            story.append(f"{pronoun} doubles them.")
            steps.append(f"{total} * 2 = {total * 2}.")
            total *= 2
    question = " ".join(story) + f" How many {things} does {name} have now?"
    return {"question": question, "answer": " ".join(steps) + f" #### {total}"}


def list_value(op, xs):
    return {"first": xs[0], "last": xs[-1], "reverse": list(reversed(xs)), "sort": sorted(xs), "max": max(xs),
            "min": min(xs), "len": len(xs), "sum": sum(xs)}[op]


def show(value):
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def list_problem(rng):
    op, xs = rng.choice(LIST_OPS), [rng.randint(0, 9) for _ in range(rng.randint(3, 5))]
    return {"question": f"{op}({show(xs)}) = ?", "answer": show(list_value(op, xs))}


LIST_SENTENCES = {"first": "The first of {x} is {v}.", "last": "The last of {x} is {v}.",
                  "reverse": "The reverse of {x} is {v}.", "sort": "Sorted, {x} is {v}.",
                  "max": "The largest of {x} is {v}.", "min": "The smallest of {x} is {v}.",
                  "len": "The list {x} has {v} items.", "sum": "The items of {x} add up to {v}."}


def list_sentence(question):
    """"reverse([1, 2]) = ?" as the corpus states it: "The reverse of [1, 2] is [2, 1]."."""
    op, xs = question.split("(", 1)[0], json.loads(question.split("(", 1)[1].rsplit(")", 1)[0])
    return LIST_SENTENCES[op].format(x=show(xs), v=show(list_value(op, xs)))


def unique(generate, count, rng, taken):
    """`count` problems whose questions are new (not in `taken`), added to `taken`."""
    out = []
    while len(out) < count:
        p = generate(rng)
        if p["question"] not in taken:
            taken.add(p["question"])
            out.append(p)
    return out


def prompt_of(question):
    """The prompt `remora eval` builds for a {question, ...} document (lm-eval's GSM8K/ARC convention)."""
    return f"Question: {question}\nAnswer:"


def training_row(task, problem):
    """The same prompt as evaluation, the answer as the completion."""
    if task == "facts":
        completion = " " + problem["choices"]["ABCD".index(problem["answerKey"])]
    else:
        completion = " " + problem["answer"]
    return {"prompt": prompt_of(problem["question"]), "completion": completion}


def corpus_lines(world, rng, held_out):
    """The base's pretraining text: facts, arithmetic facts, stories, list sentences; none of the
    `held_out` problems (test and validation) appears in it, not even as a story or a sentence."""
    lines = []
    for creature, attrs in world.items():
        for attr, value in attrs.items():
            lines += [form.format(c=creature, v=value) for form in FACT_FORMS[attr]]
    for a in range(0, 41):
        for b in range(0, 21):
            lines.append(f"{a} + {b} = {a + b}.")
            if b <= a:
                lines.append(f"{a} - {b} = {a - b}.")
        lines.append(f"{a} * 2 = {2 * a}.")
    questions = {p["question"] for p in held_out}
    held_out_stories = {q.rsplit(" How many", 1)[0] for q in questions}
    for _ in range(1500):  # stories in the problems' style, without a question or an answer
        story = arithmetic_problem(rng)["question"].rsplit(" How many", 1)[0]
        if story not in held_out_stories:
            lines.append(story)
    for _ in range(1500):
        p = list_problem(rng)
        if p["question"] not in questions:
            lines.append(list_sentence(p["question"]))
    rng.shuffle(lines)
    return lines


def generate(seed, sizes):
    """Every split of the mixture and the corpus. `sizes`: train, validation, test problems per task."""
    rng = random.Random(seed)
    creatures = creature_names(sizes["creatures"], rng)
    world = make_world(creatures, rng)
    n_val = max(1, sizes["validation"] // 3)
    n_test = max(1, sizes["test"] // 3)
    by_split = {"test": creatures[:n_test], "validation": creatures[n_test:n_test + n_val],
                "train": creatures[n_test + n_val:]}
    tasks = {}
    tasks["facts"] = {split: [fact_question(c, world, attr, values, template, rng)
                              for c in names for attr, values, template in ATTRIBUTES]
                      for split, names in by_split.items()}
    for task, maker in (("arithmetic", arithmetic_problem), ("lists", list_problem)):
        taken = set()
        tasks[task] = {split: unique(maker, sizes[split], rng, taken) for split in ("test", "validation", "train")}
    corpus = corpus_lines(world, rng, [p for t in tasks.values() for p in t["test"] + t["validation"]])
    return world, tasks, corpus


def check_disjoint(tasks, corpus):
    """No test problem in training or validation, nor in the corpus in any of the forms the corpus
    uses: as a question or prompt, as an arithmetic story without its question, as a list sentence."""
    text, lines = "\n".join(corpus), set(corpus)
    for task, splits in tasks.items():
        test = {p["question"] for p in splits["test"]}
        for other in ("train", "validation"):
            shared = test & {p["question"] for p in splits[other]}
            assert not shared, f"{task}: {len(shared)} test problems also in {other}: {sorted(shared)[:3]}"
        leaked = [q for q in test if q in text or prompt_of(q) in text]
        if task == "arithmetic":
            leaked += [q for q in test if q.rsplit(" How many", 1)[0] in lines]
        if task == "lists":
            leaked += [p["question"] for p in splits["test"] if list_sentence(p["question"]) in lines]
        assert not leaked, f"{task}: test problems in the base corpus: {leaked[:3]}"


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
