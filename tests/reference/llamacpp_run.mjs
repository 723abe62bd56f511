// Runs a GGUF file in real llama.cpp (node-llama-cpp's prebuilt CPU build, installed by
// scripts/install-deps) and prints one JSON object:
//   tokens: llama.cpp's tokenization of TEXT (no BOS, specials as text),
//   probs:  for each position of the prompt, the next-token distribution, as an array
//           indexed by token id (teacher forcing, temperature 0: the softmax of the logits),
//   greedy: N tokens generated greedily after the prompt (EOS included: exactly N),
//   text:   those tokens detokenized.
// Usage: node llamacpp_run.mjs MODEL.gguf PROMPT_IDS(comma-separated) N TEXT [exact|default]
//   exact: an F32 KV cache and no flash attention (whose CPU kernel rounds to fp16);
//   default: llama.cpp's defaults (F16 KV cache, flash attention where it chooses it).
import {createRequire} from "node:module";
import path from "node:path";

const [modelPath, idsArg, nArg, text, mode = "default"] = process.argv.slice(2);
if (!modelPath || !idsArg || !nArg || text === undefined || !["exact", "default"].includes(mode)) {
  console.error("usage: llamacpp_run.mjs MODEL.gguf IDS N TEXT [exact|default]");
  process.exit(2);
}
const npmDir = process.env.WHTLM_NPM_DIR;
const require = createRequire(path.join(npmDir, "node_modules", "x.js"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const ids = idsArg.split(",").map(Number);
const n = Number(nArg);
const exact = mode === "exact" ?
  {flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"} : {};
const context = await model.createContext({
  contextSize: Math.max(64, ids.length + n + 8), batchSize: 64, sequences: 1, threads: 1, ...exact,
});
const seq = context.getSequence();
const vocab = model.tokens.vocabularySize ?? model.fileInsights?.vocabularySize;

const res = await seq.controlledEvaluate(ids.map((t) => [t, {generateNext: {probabilities: true}}]));
const probs = res.map((r) => {
  const row = new Array(vocab).fill(0);
  for (const [tok, p] of r.next.probabilities) row[tok] = p;
  return row;
});
await seq.clearHistory();
const greedy = [];
for await (const {token} of seq.evaluateWithMetadata(ids, {}, {temperature: 0, yieldEogToken: true})) {
  greedy.push(token);
  if (greedy.length >= n) break;
}
const tokens = Array.from(model.tokenize(text, false));
console.log(JSON.stringify({tokens, probs, greedy, text: model.detokenize(greedy)}));
await context.dispose();
await model.dispose();
await llama.dispose();
