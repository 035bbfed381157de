// End-to-end test of `remora serve` with the official OpenAI client: every answer is compared with
// `remora generate` for the same model, adapter and prompt; then concurrency, bad input, limits,
// client disconnects and SIGTERM. Usage: node serve_openai.mjs --remora PATH --work DIR [--dtype float32]
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";

const here = path.dirname(fileURLToPath(import.meta.url));
const option = (name) => process.argv[process.argv.indexOf(name) + 1];
const REMORA = path.resolve(option("--remora"));
const WORK = path.resolve(option("--work"));
const DATA = path.join(here, "..", "..", "data", "shapes.jsonl");
const DTYPE = process.argv.includes("--dtype") ? option("--dtype") : "bfloat16";
const KEY = "test-key-123";
const MAX_TOKENS = 20;

let passed = 0;
let failed = 0;
function check(label, ok, detail = "") {
  console.log(`${ok ? "PASS" : "FAIL"} ${label}${detail ? ": " + detail : ""}`);
  if (ok) passed += 1;
  else failed += 1;
}

const remora = (...args) => execFileSync(REMORA, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

// Starts a server on a free port; resolves once it listens.
function startServer(extra = []) {
  const proc = spawn(REMORA, ["--threads", "2", "serve", "--model", path.join(WORK, "model"), "--served-model-name", "base",
    "--dtype", DTYPE, "--port", "0", "--api-key", KEY,
    "--adapter", `lora=${path.join(WORK, "lora")}`, "--adapter", `remix=${path.join(WORK, "remix")}`,
    "--adapter", `smora=${path.join(WORK, "smora")}`, "--adapter", `remixseq=${path.join(WORK, "remixseq")}`, ...extra], { stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let log = "";
    proc.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.match(/listening on (http:\/\/[\d.]+:\d+)/);
      if (match) {
        const server = { proc, exited, url: match[1], log: () => log };
        servers.push(server);
        resolve(server);
      }
    });
    exited.then(({ code }) => reject(new Error(`remora serve exited with ${code}: ${log}`)));
  });
}

const PROMPTS = ["The apple is", "What color is the", "A ball", "The moon", "Tell me about the box", "The sun is",
  "Why is the", "My cat"];
const MODELS = { base: null, lora: "lora", remix: "remix", smora: "smora", remixseq: "remixseq" };

// One-at-a-time greedy output of `remora generate` (--batch-size 1) for every prompt or chat message.
function expected(model, flag, items, extra = []) {
  if (items.length === 1) return expected(model, flag, [items[0], items[0]], extra).slice(0, 1);  // JSON lines need two
  const adapter = MODELS[model] ? ["--adapter", path.join(WORK, MODELS[model])] : [];
  const out = remora("generate", "--model", path.join(WORK, "model"), ...adapter, "--dtype", DTYPE,
    "--max-new-tokens", String(MAX_TOKENS), "--batch-size", "1", ...extra, ...items.flatMap((item) => [flag, item]));
  return out.trimEnd().split("\n").map((line) => JSON.parse(line));
}

async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, "m"))[1]);
  return { running: value("remora_requests_running"), steps: value("remora_decode_steps_total"),
    tokens: value("remora_generation_tokens_total") };
}

async function post(url, route, body, headers = {}) {
  const response = await fetch(`${url}${route}`, { method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body) });
  let json = null;
  try { json = await response.json(); } catch { /* not JSON: the check below fails */ }
  return { status: response.status, json };
}

async function streamedText(stream, chat) {
  let text = "";
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += chat ? (choice.delta.content ?? "") : choice.text;
      finish = choice.finish_reason ?? finish;
    }
  }
  return { text, finish };
}

async function main() {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  const at = (name) => path.join(WORK, name);
  remora("train-tokenizer", "--corpus", DATA, "--vocab-size", "400", "--out", at("tok"));
  remora("init-model", "--arch", "llama", "--preset", "toy", "--tokenizer", at("tok"), "--out", at("model"), "--seed", "3");
  // Non-zero B so that every adapter changes the model's answers.
  remora("init-adapter", "--model", at("model"), "--method", "lora", "--r", "8", "--target", "all-linear",
    "--init-b-std", "0.2", "--seed", "1", "--out", at("lora"));
  remora("init-adapter", "--model", at("model"), "--method", "remix", "--r", "4", "--experts", "4", "--top-k", "2",
    "--target", "all-linear", "--init-b-std", "0.2", "--seed", "2", "--out", at("remix"));
  remora("init-adapter", "--model", at("model"), "--method", "smora", "--r", "16", "--top-k", "4",
    "--target", "gate_proj,up_proj,down_proj", "--init-b-std", "0.2", "--seed", "3", "--out", at("smora"));
  // ReMix routing per sequence: each row keeps its prompt's decision while it decodes in the batch.
  remora("init-adapter", "--model", at("model"), "--method", "remix", "--r", "4", "--experts", "4", "--top-k", "2",
    "--target", "all-linear", "--set", "routing=sequence", "--init-b-std", "0.2", "--seed", "4", "--out", at("remixseq"));
  const want = {};
  for (const model of Object.keys(MODELS)) {
    want[model] = { prompt: expected(model, "--prompt", PROMPTS), chat: expected(model, "--chat", PROMPTS.slice(0, 2)) };
  }
  // Every `remora generate` runs before the server is used: it blocks Node's event loop, and a client
  // socket left idle past the server's keep-alive while the loop was blocked fails its next request.
  const sampled = expected("remix", "--prompt", [PROMPTS[2]], ["--temperature", "0.9", "--seed", "7"])[0];
  check("the adapters change the answers", new Set(Object.values(want).map((w) => w.prompt[0])).size === 5,
    JSON.stringify(Object.values(want).map((w) => w.prompt[0])));

  const server = await startServer(["--max-body-bytes", "65536"]);
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
  try {
    const models = await client.models.list();
    check("GET /v1/models lists the base and each adapter", JSON.stringify(models.data.map((m) => m.id)) ===
      JSON.stringify(Object.keys(MODELS)) && models.data[1].parent === "base");

    // Each model, completions and chat, streamed and not, equals `remora generate` token for token.
    for (const model of Object.keys(MODELS)) {
      const completion = await client.completions.create({ model, prompt: PROMPTS[0], max_tokens: MAX_TOKENS, temperature: 0 });
      const choice = completion.choices[0];
      check(`${model}: completion equals generate`, choice.text === want[model].prompt[0], JSON.stringify([choice.text, want[model].prompt[0]]));
      check(`${model}: usage and finish_reason`, completion.usage.completion_tokens <= MAX_TOKENS &&
        completion.usage.total_tokens === completion.usage.prompt_tokens + completion.usage.completion_tokens &&
        choice.finish_reason === (completion.usage.completion_tokens === MAX_TOKENS ? "length" : "stop"), JSON.stringify(completion.usage));
      const streamed = await streamedText(await client.completions.create({ model, prompt: PROMPTS[1], max_tokens: MAX_TOKENS,
        temperature: 0, stream: true }), false);
      check(`${model}: streamed completion equals generate`, streamed.text === want[model].prompt[1] && streamed.finish !== null,
        JSON.stringify([streamed.text, want[model].prompt[1]]));
      const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: PROMPTS[0] }],
        max_tokens: MAX_TOKENS, temperature: 0 });
      check(`${model}: chat equals generate --chat`, chat.choices[0].message.content === want[model].chat[0] &&
        chat.choices[0].message.role === "assistant", JSON.stringify([chat.choices[0].message.content, want[model].chat[0]]));
      const chatStream = await streamedText(await client.chat.completions.create({ model, max_tokens: MAX_TOKENS, temperature: 0,
        messages: [{ role: "user", content: PROMPTS[1] }], stream: true, stream_options: { include_usage: true } }), true);
      check(`${model}: streamed chat equals generate --chat`, chatStream.text === want[model].chat[1],
        JSON.stringify([chatStream.text, want[model].chat[1]]));
    }

    // Seeded sampling is reproducible and is `generate`'s sampling.
    const draws = [];
    for (let i = 0; i < 2; ++i) {
      draws.push((await client.completions.create({ model: "remix", prompt: PROMPTS[2], max_tokens: MAX_TOKENS, temperature: 0.9, seed: 7 })).choices[0].text);
    }
    check("seeded sampling equals generate --seed", draws[0] === sampled && draws[1] === sampled, JSON.stringify([...draws, sampled]));
    const several = await client.completions.create({ model: "lora", prompt: [PROMPTS[0], PROMPTS[3]], n: 2, max_tokens: 8, temperature: 0 });
    check("a prompt list with n = 2 gives 4 indexed choices", several.choices.length === 4 &&
      several.choices.every((c, i) => c.index === i) && several.choices[2].text === want.lora.prompt[3].slice(0, several.choices[2].text.length));

    // Stop strings cut the text before the stop, with finish_reason "stop".
    const full = want.base.prompt[4];
    const stop = [...full].slice(4, 6).join("");
    const cut = await client.completions.create({ model: "base", prompt: PROMPTS[4], max_tokens: MAX_TOKENS, temperature: 0, stop: [stop] });
    check("stop string", stop.length > 0 && cut.choices[0].text === full.slice(0, full.indexOf(stop)) && cut.choices[0].finish_reason === "stop",
      JSON.stringify([cut.choices[0].text, full, stop]));

    // 40 clients at once over 4 adapters and the base: every answer equals its one-at-a-time output.
    const jobs = [];
    for (const model of Object.keys(MODELS)) PROMPTS.forEach((prompt, i) => jobs.push({ model, i, stream: i % 2 === 1 }));
    const runJob = async ({ model, i, stream }) => {
      const request = { model, prompt: PROMPTS[i], max_tokens: MAX_TOKENS, temperature: 0 };
      if (!stream) return (await client.completions.create(request)).choices[0].text;
      return (await streamedText(await client.completions.create({ ...request, stream: true }), false)).text;
    };
    const before = await metrics(server.url);
    let start = performance.now();
    const concurrent = await Promise.all(jobs.map(runJob));
    const concurrentSeconds = (performance.now() - start) / 1000;
    const after = await metrics(server.url);
    const wrong = jobs.filter((job, k) => concurrent[k] !== want[job.model].prompt[job.i]);
    check(`${jobs.length} concurrent clients each get their one-at-a-time output`, wrong.length === 0, JSON.stringify(wrong.slice(0, 3)));
    const steps = after.steps - before.steps;
    const tokens = after.tokens - before.tokens;
    check("the concurrent requests were batched (fewer decode steps than tokens)", steps < tokens / 4, `${steps} steps for ${tokens} tokens`);
    start = performance.now();
    for (const job of jobs) await runJob(job);
    const sequentialSeconds = (performance.now() - start) / 1000;
    console.log(`throughput: ${jobs.length} requests concurrently in ${concurrentSeconds.toFixed(2)} s, sequentially in ` +
      `${sequentialSeconds.toFixed(2)} s (${(sequentialSeconds / concurrentSeconds).toFixed(2)}x)`);

    // Bad input: the right status and an OpenAI error body, and the server keeps answering.
    const longPrompt = Array(600).fill(5);
    const cases = [
      ["malformed JSON", "/v1/completions", "{\"model\": \"base\", \"prompt\": ", 400],
      ["a body that is not an object", "/v1/completions", "[1, 2]", 400],
      ["unknown model", "/v1/completions", { model: "nope", prompt: "x" }, 404],
      ["no prompt", "/v1/completions", { model: "base" }, 400],
      ["prompt longer than the context", "/v1/completions", { model: "base", prompt: longPrompt }, 400],
      ["prompt + max_tokens past the context", "/v1/completions", { model: "base", prompt: "x", max_tokens: 512 }, 400],
      ["negative max_tokens", "/v1/completions", { model: "base", prompt: "x", max_tokens: -1 }, 400],
      ["absurd max_tokens", "/v1/completions", { model: "base", prompt: "x", max_tokens: 1e15 }, 400],
      ["temperature 5", "/v1/completions", { model: "base", prompt: "x", temperature: 5 }, 400],
      ["top_p 0", "/v1/completions", { model: "base", prompt: "x", top_p: 0 }, 400],
      ["n = 1000", "/v1/completions", { model: "base", prompt: "x", n: 1000 }, 400],
      ["token id outside the vocabulary", "/v1/completions", { model: "base", prompt: [1, 99999999] }, 400],
      ["unsupported logprobs", "/v1/completions", { model: "base", prompt: "x", logprobs: 3 }, 400],
      ["empty stop string", "/v1/completions", { model: "base", prompt: "x", stop: [""] }, 400],
      ["chat without messages", "/v1/chat/completions", { model: "lora", messages: [] }, 400],
      ["chat with a bad role", "/v1/chat/completions", { model: "lora", messages: [{ role: "wizard", content: "x" }] }, 400],
      ["oversized body", "/v1/completions", JSON.stringify({ model: "base", prompt: "x".repeat(70000) }), 413],
      ["unknown route", "/v1/embeddings", { model: "base", input: "x" }, 404],
      ["invalid UTF-8 in the body", "/v1/completions", Buffer.from([...Buffer.from('{"model":"base","prompt":"'), 0xff, ...Buffer.from('"}')]), 400],
      ["an unknown path that is not UTF-8", "/x%FF", {}, 404],
    ];
    for (const [label, route, body, status] of cases) {
      const response = await post(server.url, route, body);
      check(`bad input: ${label} -> ${status}`, response.status === status && typeof response.json?.error?.message === "string",
        `${response.status} ${JSON.stringify(response.json)}`);
    }
    const noKey = await post(server.url, "/v1/completions", { model: "base", prompt: "x" }, { Authorization: "" });
    const wrongKey = await post(server.url, "/v1/completions", { model: "base", prompt: "x" }, { Authorization: "Bearer wrong" });
    check("requests without the API key get 401", noKey.status === 401 && wrongKey.status === 401 && noKey.json.error.code === "invalid_api_key");
    check("GET /health needs no key", (await fetch(`${server.url}/health`)).status === 200);
    const tiny = await client.completions.create({ model: "base", prompt: PROMPTS[0], max_tokens: MAX_TOKENS, temperature: 1e-45 });
    check("a temperature below 1e-5 is greedy", tiny.choices[0].text === want.base.prompt[0]);
    const still = await client.completions.create({ model: "base", prompt: PROMPTS[0], max_tokens: MAX_TOKENS, temperature: 0 });
    check("the server answers after the bad requests", still.choices[0].text === want.base.prompt[0]);

    // A client that leaves mid-stream frees its row.
    const controller = new AbortController();
    const long = await client.completions.create({ model: "remix", prompt: PROMPTS[0], max_tokens: 400, temperature: 0.8, seed: 1,
      stream: true, stop: ["NEVER-APPEARS-1", "NEVER-APPEARS-2"] }, { signal: controller.signal });
    let seen = 0;
    try {
      for await (const chunk of long) {
        seen += chunk.choices.length;
        if (seen >= 2) controller.abort();
      }
    } catch { /* the abort */ }
    let running = -1;
    for (let i = 0; i < 50 && running !== 0; ++i) {
      await new Promise((r) => setTimeout(r, 100));
      running = (await metrics(server.url)).running;
    }
    check("a client that disconnects mid-stream frees its row", running === 0, `running ${running}`);

    // SIGTERM: the stream in flight finishes with [DONE], new requests are refused, exit status 0.
    const inflight = client.completions.create({ model: "lora", prompt: PROMPTS[5], max_tokens: 300, temperature: 0.7, seed: 3,
      stream: true, stop: ["NEVER-APPEARS"] });
    const reader = (async () => {
      const stream = await inflight;
      let chunks = 0;
      let finish = null;
      for await (const chunk of stream) {
        chunks += 1;
        if (chunks === 2) server.proc.kill("SIGTERM");
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      return finish;
    })();
    const finish = await reader;
    const refused = await post(server.url, "/v1/completions", { model: "base", prompt: "x" }).catch(() => ({ status: "refused" }));
    const { code } = await server.exited;
    check("SIGTERM lets the stream in flight finish", finish === "length" || finish === "stop", `finish_reason ${finish}`);
    check("after SIGTERM new requests are refused", refused.status === 503 || refused.status === "refused", String(refused.status));
    check("SIGTERM exits 0", code === 0, `exit ${code}`);
  } finally {
    server.proc.kill("SIGKILL");
  }

  // Limits: one row, one waiting request, a small cache budget.
  const small = await startServer(["--max-num-seqs", "1", "--max-queue", "1", "--kv-cache-tokens", "128"]);
  try {
    const request = { model: "base", prompt: PROMPTS[0], max_tokens: 100, temperature: 0.8, stop: ["NEVER-APPEARS"] };
    const statuses = await Promise.all([0, 1, 2, 3, 4].map((seed) => post(small.url, "/v1/completions", { ...request, seed })));
    const limited = statuses.filter((s) => s.status === 429);
    check("beyond --max-queue requests get 429", limited.length >= 1 && limited[0].json.error.type === "rate_limit_error" &&
      statuses.every((s) => s.status === 200 || s.status === 429), JSON.stringify(statuses.map((s) => s.status)));
    const chatDefault = await post(small.url, "/v1/chat/completions", { model: "lora", messages: [{ role: "user", content: "hi" }], temperature: 0 });
    check("chat's default max_tokens fits the KV cache budget", chatDefault.status === 200 &&
      chatDefault.json.usage.prompt_tokens + chatDefault.json.usage.completion_tokens <= 129, JSON.stringify(chatDefault.json?.usage ?? chatDefault.json));
    const tooBig = await post(small.url, "/v1/completions", { model: "base", prompt: PROMPTS[0], max_tokens: 200 });
    check("a request larger than the KV cache budget gets 400", tooBig.status === 400, JSON.stringify(tooBig.json));
    const after = await post(small.url, "/v1/completions", { model: "base", prompt: PROMPTS[0], max_tokens: MAX_TOKENS, temperature: 0 });
    check("the limited server still answers", after.status === 200 && after.json.choices[0].text === want.base.prompt[0]);
  } finally {
    small.proc.kill("SIGKILL");
  }
  // A port in use is a one-line error.
  const busy = await startServer();
  try {
    const port = busy.url.split(":").pop();
    let message = "";
    try {
      remora("serve", "--model", at("model"), "--port", port);
    } catch (e) {
      message = e.stderr.trim();
    }
    check("a port in use is a one-line error", message.startsWith("remora: error: serve: cannot listen on") && !message.includes("\n"), message);
  } finally {
    busy.proc.kill("SIGKILL");
  }
}

let servers = [];  // for the diagnosis of a failure
main()
  .catch((error) => {
    check("the test ran to the end", false, error.stack);
    for (const server of servers) console.log(`server ${server.url} (exit ${server.proc.exitCode}, signal ${server.proc.signalCode}) log:\n${server.log().slice(-3000)}`);
  })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
