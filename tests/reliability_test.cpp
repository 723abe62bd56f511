// What whtlm promises about hostile or damaged input, checked at the library level:
// bounds and their messages, JSON errors that name the field, files that shrink while
// open (an error, never a SIGBUS), files that are not regular files (refused, never
// waited on), CRC-32C, damaged weights (NaN, an untied GPT-2 head), config fields that
// would change the model's meaning, plans too large for memory (refused before any
// allocation) and sampling that cannot go silently wrong.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/json_read.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/data.hpp"
#include "whtlm/infer.hpp"
#include "whtlm/io.hpp"
#include "whtlm/limits.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class Reliability : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "whtlm_rel_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream(file(name), std::ios::binary) << bytes;
  }
  fs::path dir_;
};

// The message of the exception of type E that f throws (a failure when none is thrown).
template <class E = std::exception, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return {};
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

TEST(Bounds, EveryWayOfBeingOutOfRangeIsNamedWithTheRange) {
  EXPECT_EQ(check_bound(limits::threads, 4, "--threads"), 4);
  const std::string big =
      error_of<std::invalid_argument>([] { check_bound(limits::threads, 70000, "--threads"); });
  EXPECT_HAS(big,
             "--threads: 70000 is too large: expected an integer from 0 to 256 (0: all cores)");
  EXPECT_HAS(error_of([] { check_bound(limits::clip, std::nan(""), "--clip"); }),
             "--clip: nan is not a number");
  EXPECT_HAS(error_of([] { check_bound(limits::flops, INFINITY, "--flops"); }), "is infinite");
  EXPECT_HAS(error_of([] { check_bound(limits::seq, -1, "--seq"); }), "-1 is too small");
  EXPECT_HAS(error_of([] { check_bound(limits::batch, 2.5, "--batch"); }), "2.5 is not an integer");
  // Open ends refuse the end itself.
  EXPECT_HAS(error_of([] { check_bound(limits::lr, 0, "--lr"); }),
             "expected a number in (0, 1000000]");
  EXPECT_HAS(error_of([] { check_bound(limits::adam_beta, 1, "beta1"); }), "too large");
}

TEST(Bounds, TextIsParsedOnceForEverySource) {
  EXPECT_EQ(parse_bounded(limits::steps, "1e3", "--steps"), 1000);
  EXPECT_HAS(error_of([] { parse_bounded(limits::steps, "12abc", "--steps"); }),
             "--steps: '12abc' is not a number");
  EXPECT_HAS(error_of([] { parse_bounded(limits::steps, "", "--steps"); }), "is not a number");
  EXPECT_HAS(error_of([] { parse_bounded(limits::steps, "1e999", "--steps"); }),
             "1e999 is too large");
  EXPECT_HAS(error_of([] { parse_bounded(limits::eos, "4294967296", "--eos"); }), "too large");
}

TEST(JsonFields, AParseFailureNamesTheFieldBeingRead) {
  const std::string msg = error_of<std::runtime_error>([] {
    io::parse_json(R"({"model_type": "llama", "num_hidden_layers": 1e999})", "c/config.json");
  });
  EXPECT_HAS(msg, "c/config.json: field \"num_hidden_layers\": not valid JSON");
  const json j = json::parse(R"({"options": {"threads": 70000, "lr": "fast"}})");
  const io::JsonObject o = io::JsonObject(j, "r/train_state.json").object("options");
  EXPECT_HAS(error_of([&] { o.integer<int>("threads", limits::threads); }),
             "r/train_state.json: field \"options.threads\": 70000 is too large");
  EXPECT_HAS(error_of([&] { o.number("lr", limits::lr); }),
             "field \"options.lr\": expected a number in (0, 1000000], found a string \"fast\"");
  EXPECT_HAS(error_of([&] { o.number("clip", limits::clip); }), "field \"options.clip\": missing");
}

TEST(Checksums, Crc32cMatchesTheStandardCheckValue) {
  const std::string nine = "123456789";
  EXPECT_EQ(io::crc32c(0, nine.data(), nine.size()), 0xE3069283u);  // RFC 3720's check value
  // Continuing from a partial CRC is the CRC of the whole.
  EXPECT_EQ(io::crc32c(io::crc32c(0, nine.data(), 4), nine.data() + 4, 5), 0xE3069283u);
}

TEST_F(Reliability, AFileTruncatedWhileOpenIsAnErrorNamingItNotASignal) {
  const std::vector<std::int32_t> tokens(100000, 7);
  data::write_llmc_shard(file("s.bin"), tokens);
  const data::TokenSource source = data::TokenSource::map_shards({file("s.bin")});
  std::vector<std::int32_t> out(10);
  source.read(90000, 10, out.data());
  EXPECT_EQ(out[9], 7);
  ASSERT_EQ(::truncate(file("s.bin").c_str(), 4096), 0);  // another program cuts it short
  const std::string msg = error_of<std::runtime_error>([&] { source.read(90000, 10, out.data()); });
  EXPECT_HAS(msg, file("s.bin") + ": 20 bytes at offset 181024 are past its end");
  EXPECT_HAS(msg, "now 4096 bytes, 201024 when opened: truncated while in use");
}

TEST_F(Reliability, ASafetensorsFileTruncatedAfterOpeningIsAnError) {
  const std::vector<float> w(4096, 1.0f);
  io::write_safetensors(file("w.safetensors"), {{"w", io::DType::f32, {4096}, w.data()}});
  const io::SafetensorsReader r(file("w.safetensors"));
  ASSERT_EQ(::truncate(file("w.safetensors").c_str(), 200), 0);
  std::vector<float> got(4096);
  EXPECT_HAS(error_of([&] { r.read_f32("w", {4096}, got.data()); }), file("w.safetensors"));
}

TEST_F(Reliability, OnlyRegularFilesAreReadAndNeverWaitedOn) {
  ASSERT_EQ(::mkfifo(file("fifo").c_str(), 0600), 0);
  // Opening a FIFO for reading would block until a writer came; it is refused at once.
  EXPECT_HAS(error_of([&] { io::read_file(file("fifo")); }), "a FIFO (named pipe)");
  EXPECT_HAS(error_of([&] { io::read_file("/dev/zero"); }), "/dev/zero: cannot read: a character");
  EXPECT_HAS(error_of([&] { io::InputFile f(file("fifo")); }), "where a regular file is needed");
  write("big.json", std::string(2000, ' '));
  EXPECT_HAS(error_of([&] { io::read_file(file("big.json"), 1000); }),
             "2000 bytes (0.0 MiB) is more than the 0.0 MiB whtlm reads for a file of this kind");
}

TEST_F(Reliability, AtomicWritesNeverReplaceAnotherFileThanTheirTarget) {
  write("out.json.tmp", "the user's");  // the name an older whtlm used for its temp file
  io::write_file_atomic(file("out.json"), "new");
  EXPECT_EQ(io::read_file(file("out.json.tmp")), "the user's");
  EXPECT_EQ(io::read_file(file("out.json")), "new");
  const io::FileChecksum c = io::file_checksum(file("out.json"));
  EXPECT_EQ(c, io::write_file_atomic(file("out.json"), "new"));
  EXPECT_EQ(c.bytes, 3u);
}

// config.json fields that would change the model if ignored are refused, naming them.
TEST(ConfigJson, FieldsThatWouldChangeTheModelAreRefusedNotIgnored) {
  json llama = json::parse(config_to_json(preset("tiny")));
  EXPECT_NO_THROW(config_from_json(llama.dump(), "c.json"));
  auto refused = [](json j, const char* field, const json& value) {
    j[field] = value;
    return error_of<std::runtime_error>([&] { config_from_json(j.dump(), "c.json"); });
  };
  EXPECT_HAS(refused(llama, "hidden_act", "gelu"), "c.json: field \"hidden_act\": found \"gelu\"");
  EXPECT_HAS(refused(llama, "attention_bias", true), "field \"attention_bias\"");
  EXPECT_HAS(refused(llama, "mlp_bias", true), "field \"mlp_bias\"");
  EXPECT_HAS(refused(llama, "num_hidden_layers", 1000000000),
             "field \"num_hidden_layers\": 1000000000 is too large: expected an integer from 1 "
             "to 1024");
  EXPECT_HAS(refused(llama, "rms_norm_eps", -1), "field \"rms_norm_eps\"");
  json gpt2 = json::parse(config_to_json(preset("tiny-gpt2")));
  EXPECT_HAS(refused(gpt2, "tie_word_embeddings", false), "field \"tie_word_embeddings\"");
  EXPECT_HAS(refused(gpt2, "scale_attn_by_inverse_layer_idx", true),
             "field \"scale_attn_by_inverse_layer_idx\"");
}

// A small model's checkpoint, with one tensor changed by `edit` before it is written.
std::string saved_model(const std::string& dir, ModelConfig c,
                        const std::function<void(const ParamLayout&, std::vector<float>&)>& edit) {
  Transformer m(c);
  m.init_weights(1);
  std::vector<float> p(m.params().begin(), m.params().end());
  edit(m.layout(), p);
  save_model(dir, m.layout(), p.data());
  return dir;
}

ModelConfig small(const char* name) {
  ModelConfig c = preset(name);
  c.n_layer = 1;
  c.d_model = 32;
  c.n_head = c.n_kv_head = 2;
  return c;
}

TEST_F(Reliability, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const std::string dir =
      saved_model(file("nan"), small("tiny"), [](const ParamLayout& l, auto& p) {
        p[l.find("model.layers.0.mlp.down_proj.weight")->offset + 5] = std::nanf("");
      });
  const std::string msg = error_of<std::runtime_error>([&] { load_model(dir); });
  EXPECT_HAS(msg, "tensor 'model.layers.0.mlp.down_proj.weight' holds NaN at element 5");
}

TEST_F(Reliability, AnUntiedGpt2HeadIsRefusedATiedOneAccepted) {
  const ModelConfig c = small("tiny-gpt2");
  Transformer m(c);
  m.init_weights(1);
  const TensorSpec& wte = *m.layout().find("transformer.wte.weight");
  std::vector<io::TensorToWrite> tensors;
  for (const TensorSpec& t : m.layout().tensors())
    tensors.push_back({t.name, io::DType::f32, t.shape, m.params().data() + t.offset});
  std::vector<float> head(m.params().begin() + std::ptrdiff_t(wte.offset),
                          m.params().begin() + std::ptrdiff_t(wte.offset + wte.numel));
  tensors.push_back({"lm_head.weight", io::DType::f32, wte.shape, head.data()});
  io::write_safetensors(file("tied.safetensors"), tensors);
  std::vector<float> p(m.layout().total_floats());
  EXPECT_NO_THROW(load_weights(file("tied.safetensors"), m.layout(), p.data()));
  head[3] += 1.0f;
  io::write_safetensors(file("untied.safetensors"), tensors);
  EXPECT_HAS(error_of([&] { load_weights(file("untied.safetensors"), m.layout(), p.data()); }),
             "'lm_head.weight' differs from transformer.wte.weight: an untied GPT-2 head");
}

TEST_F(Reliability, ConfigSizesAreCheckedAgainstTheWeightsFileBeforeAllocating) {
  const std::string dir = saved_model(file("m"), small("tiny"), [](auto&, auto&) {});
  json c = json::parse(io::read_file(dir + "/config.json"));
  c["num_hidden_layers"] = 1000;  // in bounds, but the file holds one layer
  std::ofstream(dir + "/config.json") << c.dump();
  EXPECT_HAS(error_of([&] { load_model(dir); }), "missing tensor 'model.layers.1.");
}

TEST_F(Reliability, ADamagedFileIsFoundByItsChecksum) {
  const std::string dir = saved_model(file("c"), small("tiny"), [](auto&, auto&) {});
  write_checksums(dir, {{"model.safetensors", io::file_checksum(dir + "/model.safetensors")},
                        {"config.json", io::file_checksum(dir + "/config.json")}});
  EXPECT_NO_THROW(load_model(dir));
  {  // one bit flipped in the middle of the weights
    std::fstream f(dir + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(3000);
    char b = 0;
    f.read(&b, 1);
    b ^= 0x10;
    f.seekp(3000);
    f.write(&b, 1);
  }
  const std::string msg = error_of<ChecksumError>([&] { load_model(dir); });
  EXPECT_HAS(msg, dir + "/model.safetensors: checksum mismatch");
}

TEST(Memory, AModelTooLargeForMemoryIsRefusedBeforeAllocating) {
  ModelConfig c = preset("tiny");
  c.n_layer = 1024;
  c.d_model = 65536;
  c.n_head = c.n_kv_head = 512;
  const std::string msg = error_of<std::runtime_error>([&] { Transformer m(c); });
  EXPECT_HAS(msg, "the model (llama, 1024 layers");
  EXPECT_HAS(msg, "of memory (weights ");
  EXPECT_HAS(msg, "available on cpu");
}

TEST(Memory, ActivationsTooLargeAreRefusedNamingABatchThatFits) {
  ModelConfig c = small("tiny");
  c.max_seq = 1 << 20;
  Transformer m(c);
  const std::string msg = error_of<std::runtime_error>([&] { m.reserve(65536, 1 << 20); });
  EXPECT_HAS(msg, "activations at --batch 65536, --seq 1048576 needs");
  EXPECT_HAS(msg, "TiB of memory (activations ");
  EXPECT_HAS(msg, "available on cpu; at seq 1048576, batch ");
  EXPECT_HAS(msg, " would fit");
  EXPECT_NO_THROW(m.reserve(2, 16));  // nothing was left half-allocated
}

TEST(Memory, AKvCacheTooLargeIsRefusedBeforeAllocating) {
  ModelConfig c = small("tiny");
  c.max_seq = 1 << 20;
  Transformer m(c);
  EXPECT_HAS(error_of([&] { InferenceSession s(m, 65536, 1 << 20); }),
             "inference at batch 65536 x 1048576 tokens needs");
}

TEST(Sampling, NaNTemperatureOrLogitsAreRefusedNotSampled) {
  std::vector<float> logits{1.0f, 3.0f, 2.0f};
  SamplingOptions o;
  o.temperature = std::nanf("");
  EXPECT_HAS(error_of([&] { sample_token(logits, {}, o, 0, 0); }), "temperature: nan");
  o.temperature = 1.0f;
  logits[2] = std::nanf("");
  EXPECT_HAS(error_of([&] { sample_token(logits, {}, o, 0, 0); }), "NaN logit (id 2)");
}

TEST(Sampling, PromptsSampleTheSameWhateverGroupsTheyRunIn) {
  ModelConfig c = small("tiny");
  Transformer m(c);
  m.init_weights(3);
  const std::vector<std::vector<std::int32_t>> prompts{{1, 2, 3}, {4, 5}, {6}};
  GenerateOptions o;
  o.max_new_tokens = 12;
  const std::vector<Generation> together = generate(m, prompts, o);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    GenerateOptions alone = o;
    alone.first_sequence = i;
    EXPECT_EQ(generate(m, {prompts[i]}, alone)[0].tokens, together[i].tokens) << "prompt " << i;
  }
}

}  // namespace
}  // namespace whtlm
