#!/usr/bin/python3
"""The tokenizer verbs end to end (train-tokenizer, init-model --tokenizer, tokenize, generate --prompt/--chat) and their errors."""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

VOCAB = 400
TEXTS = {
    "ascii": "Hello, world! The quick brown fox: x = foo(42) + 3.14;\n\tdone  ",
    "cjk": "你好世界，今天天气很好。日本語のテキスト、한국어 문장",
    "emoji": "🙂 launch 🚀🚀 family 👩‍👩‍👧 flag 🇫🇷 ok👍🏽",
}
CORPUS = ("The quick brown fox jumps over the lazy dog. Hello world, hello tokenizer!\n"
          "def forward(x): return x * 2 + 1  # code\n"
          "你好世界，今天天气很好。我们训练一个分词器。\n"
          "Emoji: 🙂🚀 launch, 👍 ok, 🎉 party.\n")
check = Checks()


def byte_decoder():
    """GPT-2's byte <-> printable character map, inverted."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


BYTES = byte_decoder()


def decode_pieces(pieces, specials=()):
    """Byte-level decode, as Hugging Face does: special tokens dropped, invalid UTF-8 replaced."""
    data = b"".join(bytes(BYTES[c] for c in p) for p in pieces if p not in specials)
    return data.decode("utf-8", errors="replace")


def one_line_error(result, *needles):
    err = result.stderr.decode("utf-8", "replace").strip()
    return result.returncode != 0 and "\n" not in err and all(n in err for n in needles), err


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run = lambda *a: subprocess.run([args.remora, *a], capture_output=True)  # noqa: E731
    path = lambda *p: os.path.join(work, *p)  # noqa: E731
    read = lambda p: open(p, "rb").read()  # noqa: E731

    corpus = [path("a.txt"), path("b.txt")]
    for i, file in enumerate(corpus):
        with open(file, "w", encoding="utf-8") as f:
            f.write(CORPUS * (20 + 10 * i) + "".join(TEXTS.values()))
    train = lambda out, *extra: run("train-tokenizer", "--corpus", *corpus, "--vocab-size", str(VOCAB),  # noqa: E731
                                    "--out", out, *extra)

    # train-tokenizer: files, BPE model, vocabulary bound, well-formed merges, determinism.
    tok = path("tok")
    r = train(tok)
    files = ["tokenizer.json", "tokenizer_config.json"]
    check("train-tokenizer writes tokenizer.json + tokenizer_config.json",
          r.returncode == 0 and all(os.path.isfile(os.path.join(tok, f)) for f in files), r.stderr.decode())
    if check.failed:  # nothing else can be checked
        return check.finish()
    spec = json.loads(read(os.path.join(tok, "tokenizer.json")))
    tok_config = json.loads(read(os.path.join(tok, "tokenizer_config.json")))
    model = spec["model"]
    vocab = model["vocab"]
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
    check("tokenizer.json has a BPE model", model["type"] == "BPE", model["type"])
    check(f"vocab has at most {VOCAB} entries (+ added tokens)", len(set(vocab) | set(added)) <= VOCAB,
          f"{len(vocab)} vocab, {len(added)} added")
    check("vocab ids are distinct and 0..size-1", sorted(set(vocab.values()) | set(added.values())) ==
          list(range(len(set(vocab) | set(added)))))
    check("every merge [a, b] has a, b and a+b in the vocab",
          all(len(m) == 2 and m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab for m in model["merges"]))
    tok2 = path("tok2")
    train(tok2)
    check("training twice gives byte-identical files",
          all(read(os.path.join(tok, f)) == read(os.path.join(tok2, f)) for f in files))

    # An existing --out is refused without --overwrite and left untouched.
    before = {f: (read(os.path.join(tok, f)), os.stat(os.path.join(tok, f)).st_mtime_ns) for f in files}
    other = path("other.txt")
    with open(other, "w") as f:
        f.write("completely different text " * 50)
    r = run("train-tokenizer", "--corpus", other, "--vocab-size", str(VOCAB), "--out", tok)
    ok, err = one_line_error(r, tok)
    after = {f: (read(os.path.join(tok, f)), os.stat(os.path.join(tok, f)).st_mtime_ns) for f in files}
    check("existing --out refused: non-zero exit, one-line error naming it, files untouched",
          ok and before == after, err)
    r = run("train-tokenizer", "--corpus", other, "--vocab-size", str(VOCAB), "--out", tok2, "--overwrite")
    check("--overwrite replaces it", r.returncode == 0 and read(os.path.join(tok2, "tokenizer.json")) !=
          read(os.path.join(tok, "tokenizer.json")), r.stderr.decode())

    # init-model --tokenizer: vocab_size and bos/eos from the tokenizer, files copied.
    model_dir = path("model")
    r = run("init-model", "--tokenizer", tok, "--out", model_dir)
    config = json.loads(read(os.path.join(model_dir, "config.json"))) if r.returncode == 0 else {}
    want = {"vocab_size": max(list(vocab.values()) + list(added.values())) + 1,
            "bos_token_id": added[tok_config["bos_token"]], "eos_token_id": added[tok_config["eos_token"]]}
    got = {k: config.get(k) for k in want}
    check("init-model --tokenizer sets vocab_size, bos/eos ids", got == want, f"{got} != {want}")
    check("init-model --tokenizer copies the tokenizer files",
          all(read(os.path.join(tok, f)) == read(os.path.join(model_dir, f)) for f in files))

    # tokenize: ids line, pieces line, pieces are the vocab's, decoding them gives the text back.
    id_to_piece = {i: p for p, i in {**vocab, **added}.items()}
    specials = {t["content"] for t in spec["added_tokens"] if t["special"]}
    for name, text in TEXTS.items():
        r = run("tokenize", "--model", model_dir, "--text", text)
        lines = r.stdout.decode("utf-8").splitlines()
        ids, pieces = (json.loads(lines[0]), json.loads(lines[1])) if r.returncode == 0 else ([None], [])
        check(f"tokenize {name}: first line is a JSON array of ints",
              isinstance(ids, list) and ids and all(isinstance(i, int) for i in ids), lines[:1])
        check(f"tokenize {name}: pieces match the ids", pieces == [id_to_piece.get(i) for i in ids])
        check(f"tokenize {name}: decoding the pieces gives the text back", decode_pieces(pieces) == text,
              repr(decode_pieces(pieces)))
    r = run("tokenize", "--model", model_dir, "--text", "<|im_start|>user")
    check("tokenize: special token text becomes its id",
          r.returncode == 0 and json.loads(r.stdout.splitlines()[0])[0] == added["<|im_start|>"])
    # train-tokenizer's post-processor is ByteLevel, which adds no special tokens (add_bos_token is
    # false): --special must leave the ids as they are, with no BOS in front.
    check("train-tokenizer's post-processor is ByteLevel (no BOS template)", spec["post_processor"]["type"] == "ByteLevel")
    plain = run("tokenize", "--model", model_dir, "--text", TEXTS["ascii"]).stdout.splitlines()[0]
    r = run("tokenize", "--model", model_dir, "--text", TEXTS["ascii"], "--special")
    check("tokenize --special adds nothing with a ByteLevel post-processor",
          r.returncode == 0 and r.stdout.splitlines()[0] == plain, r.stdout.splitlines()[:1])

    # generate: text output equals the Python decode of the same run by ids; --chat renders ChatML.
    prompt = "Hello world"
    gen = lambda *a: run("generate", "--model", model_dir, "--max-new-tokens", "8", *a)  # noqa: E731
    r = gen("--prompt", prompt)
    text_out = r.stdout.decode("utf-8", "replace")
    check("generate --prompt exits 0 and prints text", r.returncode == 0 and text_out.endswith("\n"), r.stderr.decode())
    prompt_ids = json.loads(run("tokenize", "--model", model_dir, "--text", prompt).stdout.splitlines()[0])
    r = gen("--ids", ",".join(map(str, prompt_ids)))
    new_ids = [int(i) for i in r.stdout.decode().strip().split(",") if i]
    expected = decode_pieces([id_to_piece[i] for i in new_ids], specials) + "\n"
    check("generate --prompt text is the decode of generate --ids", text_out == expected, f"{text_out!r} != {expected!r}")
    r = gen("--chat", prompt)
    chatml = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    check("generate --chat exits 0 and equals --prompt with the ChatML rendering",
          r.returncode == 0 and r.stdout == gen("--prompt", chatml).stdout, r.stderr.decode())
    ok, err = one_line_error(gen("--ids", "1,2", "--prompt", prompt), "--ids", "--prompt")
    check("generate with both --ids and --prompt is a one-line error", ok, err)

    # Bad input: no tokenizer.json, truncated tokenizer.json.
    bare = path("bare")
    shutil.copytree(model_dir, bare)
    os.remove(os.path.join(bare, "tokenizer.json"))
    for verb in (["tokenize", "--model", bare, "--text", "hi"], ["generate", "--model", bare, "--prompt", "hi"]):
        ok, err = one_line_error(run(*verb), "tokenizer.json")
        check(f"{verb[0]} without tokenizer.json: one-line error naming it", ok, err)
    corrupt = path("corrupt")
    shutil.copytree(model_dir, corrupt)
    corrupt_file = os.path.join(corrupt, "tokenizer.json")
    with open(corrupt_file, "wb") as f:
        f.write(read(os.path.join(tok, "tokenizer.json"))[:5000])
    for verb in (["tokenize", "--model", corrupt, "--text", "hi"], ["generate", "--model", corrupt, "--prompt", "hi"],
                 ["init-model", "--tokenizer", corrupt, "--out", path("never")]):
        ok, err = one_line_error(run(*verb), corrupt_file)
        check(f"{verb[0]} with a truncated tokenizer.json: one-line error naming the file", ok, err)

    if check.failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
