// Load test of `remora serve`: requests/s, output tokens/s, latency and time to first token at 1, 8 and
// 32 concurrent streaming clients spread over the base model and its adapters (official openai client).
// Usage: node bench/serve_bench.mjs --url http://127.0.0.1:PORT --models base,lora,remix,smora
//          [--clients 1,8,32] [--requests-per-client 4] [--max-tokens 64] [--prompt-words 0] [--api-key KEY]
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// The client is installed with the tests (scripts/setup.sh: npm ci in tests/serve).
const here = path.dirname(fileURLToPath(import.meta.url));
const OpenAI = createRequire(path.join(here, "..", "tests", "serve", "package.json"))("openai").default;

const option = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const url = option("--url");
const models = option("--models", "base").split(",");
const clientCounts = option("--clients", "1,8,32").split(",").map(Number);
const perClient = Number(option("--requests-per-client", "4"));
const maxTokens = Number(option("--max-tokens", "64"));
const promptWords = Number(option("--prompt-words", "0"));
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: option("--api-key", "none"), maxRetries: 0 });
const PROMPTS = ["The apple is", "What color is the", "A ball", "The moon", "Tell me about the box", "The sun is",
  "Why is the", "My cat"];
// Long prompts (time to first token is then mostly prefill): words from a fixed text, repeated, before each prompt.
const FILLER = "the red apple sat on the old wooden table next to a blue cup and a small green box".split(" ");
const prefix = Array.from({ length: promptWords }, (_, i) => FILLER[i % FILLER.length]).join(" ");
const promptFor = (k) => (prefix ? `${prefix} ${PROMPTS[k % PROMPTS.length]}` : PROMPTS[k % PROMPTS.length]);

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

async function one(k) {
  const start = performance.now();
  let first = null;
  let tokens = 0;
  // Sampling with a fixed seed and no stop: every request generates max_tokens unless eos comes first.
  const stream = await client.completions.create({ model: models[k % models.length], prompt: promptFor(k),
    max_tokens: maxTokens, temperature: 1, seed: k, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    if (first === null && chunk.choices.length && chunk.choices[0].text) first = performance.now() - start;
    if (chunk.usage) tokens = chunk.usage.completion_tokens;
  }
  return { latency: performance.now() - start, ttft: first ?? performance.now() - start, tokens };
}

console.log(`| clients | requests | requests/s | output tokens/s | p50 latency (s) | p99 latency (s) | p50 TTFT (s) | p99 TTFT (s) |`);
console.log(`|---|---|---|---|---|---|---|---|`);
for (const clients of clientCounts) {
  const results = [];
  const start = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let r = 0; r < perClient; ++r) results.push(await one(c * perClient + r));
  }));
  const seconds = (performance.now() - start) / 1000;
  const tokens = results.reduce((sum, r) => sum + r.tokens, 0);
  const lat = results.map((r) => r.latency / 1000);
  const ttft = results.map((r) => r.ttft / 1000);
  console.log(`| ${clients} | ${results.length} | ${(results.length / seconds).toFixed(2)} | ${(tokens / seconds).toFixed(1)} | ` +
    `${percentile(lat, 50).toFixed(2)} | ${percentile(lat, 99).toFixed(2)} | ${percentile(ttft, 50).toFixed(3)} | ${percentile(ttft, 99).toFixed(3)} |`);
}
