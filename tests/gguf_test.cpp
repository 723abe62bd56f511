// GGUF v3: round trips through our writer and reader, a file compared byte for byte with
// one assembled by hand from the format description (../shared/INTEROP.md section 1), and
// every refusal the reader promises on hostile files, each a std::runtime_error naming the
// file and the field.
#include "whtlm/gguf.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using whtlm::io::GgmlType;
using whtlm::io::GgufReader;
using whtlm::io::GgufValue;
using whtlm::io::GgufValueType;
using whtlm::io::GgufWriter;

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "whtlm_gguf_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string p = file(name);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

  fs::path dir_;
};

std::string slurp(const std::string& path) { return whtlm::io::read_file(path); }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a std::runtime_error";
  return {};
}

template <class F>
std::string invalid_argument_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a std::invalid_argument";
  return {};
}

// Little-endian bytes, assembled by hand.
struct Bytes {
  std::string s;
  template <class T>
  Bytes& put(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Bytes& u8(std::uint8_t v) { return put(v); }
  Bytes& u32(std::uint32_t v) { return put(v); }
  Bytes& u64(std::uint64_t v) { return put(v); }
  Bytes& str(const std::string& v) {
    u64(v.size());
    s += v;
    return *this;
  }
  Bytes& raw(const std::string& v) {
    s += v;
    return *this;
  }
  Bytes& pad(std::size_t align) {
    s.append((align - s.size() % align) % align, '\0');
    return *this;
  }
};

std::string header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
  return Bytes().raw("GGUF").u32(version).u64(n_tensors).u64(n_kv).s;
}
std::string kv_u32(const std::string& key, std::uint32_t v) {
  return Bytes().str(key).u32(4).u32(v).s;
}
std::string info(const std::string& name, const std::vector<std::uint64_t>& dims,
                 std::uint32_t type, std::uint64_t offset) {
  Bytes b;
  b.str(name).u32(static_cast<std::uint32_t>(dims.size()));
  for (std::uint64_t d : dims) b.u64(d);
  return b.u32(type).u64(offset).s;
}
// header + kvs + infos, zero padding to `align`, then `data`.
std::string assemble(std::uint64_t n_tensors, std::uint64_t n_kv, const std::string& kvs,
                     const std::string& infos, const std::string& data, std::size_t align = 32) {
  Bytes b;
  b.raw(header(n_tensors, n_kv)).raw(kvs).raw(infos).pad(align).raw(data);
  return b.s;
}

GgufValue scalar(GgufValueType t, std::int64_t integer, double real = 0) {
  GgufValue v;
  v.type = t;
  v.integer = integer;
  v.real = real;
  return v;
}
GgufValue array(GgufValueType elem, std::vector<GgufValue> items) {
  GgufValue v;
  v.type = GgufValueType::array;
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}
// Arrays nested `depth` deep around one u8.
GgufValue nested(int depth) {
  GgufValue v = scalar(GgufValueType::u8, 7);
  for (int i = 0; i < depth; ++i) {
    const GgufValueType elem = v.type;
    v = array(elem, {v});
  }
  return v;
}

TEST(GgufTypes, NamesSizesAndValueTypes) {
  EXPECT_EQ(whtlm::io::ggml_type_name(0), "F32");
  EXPECT_EQ(whtlm::io::ggml_type_name(1), "F16");
  EXPECT_EQ(whtlm::io::ggml_type_name(8), "Q8_0");
  EXPECT_EQ(whtlm::io::ggml_type_name(30), "BF16");
  EXPECT_EQ(whtlm::io::ggml_type_name(2), "type 2");
  EXPECT_TRUE(whtlm::io::ggml_type_known(8));
  EXPECT_FALSE(whtlm::io::ggml_type_known(2));
  EXPECT_EQ(whtlm::io::ggml_row_bytes(GgmlType::f32, 5), 20u);
  EXPECT_EQ(whtlm::io::ggml_row_bytes(GgmlType::f16, 5), 10u);
  EXPECT_EQ(whtlm::io::ggml_row_bytes(GgmlType::bf16, 5), 10u);
  EXPECT_EQ(whtlm::io::ggml_row_bytes(GgmlType::q8_0, 64), 68u);
  EXPECT_THROW(whtlm::io::ggml_row_bytes(GgmlType::q8_0, 33), std::invalid_argument);
  EXPECT_THROW(whtlm::io::ggml_row_bytes(static_cast<GgmlType>(2), 32), std::invalid_argument);
  const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                         "bool", "string", "array", "u64", "i64", "f64"};
  for (std::uint32_t t = 0; t < 13; ++t)
    EXPECT_STREQ(whtlm::io::gguf_value_type_name(static_cast<GgufValueType>(t)), names[t]);
  whtlm::io::GgufTensorInfo ti;
  ti.dims = {3, 4, 5};
  EXPECT_EQ(ti.numel(), 60u);
}

TEST_F(GgufTest, RoundTripsEveryValueTypeAndTensorType) {
  GgufWriter w;
  w.add_u32("t.u32", 0xfffffff0u);
  w.add_i32("t.i32", -5);
  w.add_u64("t.u64", std::numeric_limits<std::uint64_t>::max());
  w.add_f32("t.f32", 1.5f);
  w.add_bool("t.bool", true);
  w.add_string("t.string", "h\xc3\xa9llo");
  w.add_string_array("t.strings", {"a", "", "\xc3\xbc"});
  w.add_i32_array("t.i32s", {1, -2, 3});
  w.add_f32_array("t.f32s", {0.5f, -1e30f});
  w.add_value("t.u8", scalar(GgufValueType::u8, 200));
  w.add_value("t.i8", scalar(GgufValueType::i8, -100));
  w.add_value("t.u16", scalar(GgufValueType::u16, 60000));
  w.add_value("t.i16", scalar(GgufValueType::i16, -30000));
  w.add_value("t.i64", scalar(GgufValueType::i64, std::numeric_limits<std::int64_t>::min()));
  w.add_value("t.f64", scalar(GgufValueType::f64, 0, 1e300));
  w.add_value("t.bools", array(GgufValueType::boolean, {scalar(GgufValueType::boolean, 0),
                                                        scalar(GgufValueType::boolean, 1)}));
  w.add_value("t.empty", array(GgufValueType::u64, {}));
  w.add_value("t.nested", nested(4));

  std::vector<float> f32(6);
  for (std::size_t i = 0; i < f32.size(); ++i) f32[i] = 0.25f * float(i) - 1;
  std::vector<std::uint16_t> f16 = {0x3c00, 0xbc00, 0x0001, 0x7bff, 0x8000};
  std::vector<std::uint8_t> q8(68);
  for (std::size_t i = 0; i < q8.size(); ++i) q8[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<std::uint16_t> bf16 = {1, 2, 3, 4, 5, 6, 7};
  w.add_tensor("a.weight", {3, 2}, GgmlType::f32, f32.data(), 24);
  w.add_tensor("b", {5}, GgmlType::f16, f16.data(), 10);
  w.add_tensor("c.q", {32, 2}, GgmlType::q8_0, q8.data(), 68);
  w.add_tensor("d", {7, 1, 1, 1}, GgmlType::bf16, bf16.data(), 14);
  const std::string path = file("m.gguf");
  const whtlm::io::FileChecksum sum = w.write(path);

  const GgufReader r(path);
  EXPECT_EQ(r.version(), 3u);
  EXPECT_EQ(r.alignment(), 32u);
  const std::vector<std::string> keys = {
      "t.u32", "t.i32", "t.u64", "t.f32", "t.bool", "t.string", "t.strings", "t.i32s",  "t.f32s",
      "t.u8",  "t.i8",  "t.u16", "t.i16", "t.i64",  "t.f64",    "t.bools",   "t.empty", "t.nested"};
  EXPECT_EQ(r.keys(), keys);
  EXPECT_EQ(r.get_u32("t.u32"), 0xfffffff0u);
  EXPECT_EQ(r.value("t.i32").type, GgufValueType::i32);
  EXPECT_EQ(r.value("t.i32").integer, -5);
  EXPECT_EQ(r.value("t.u64").type, GgufValueType::u64);
  EXPECT_EQ(static_cast<std::uint64_t>(r.value("t.u64").integer),
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(r.get_f32("t.f32"), 1.5f);
  EXPECT_TRUE(r.get_bool("t.bool"));
  EXPECT_EQ(r.get_string("t.string"), "h\xc3\xa9llo");
  EXPECT_EQ(r.get_string_array("t.strings"), (std::vector<std::string>{"a", "", "\xc3\xbc"}));
  EXPECT_EQ(r.get_i32_array("t.i32s"), (std::vector<std::int32_t>{1, -2, 3}));
  EXPECT_EQ(r.get_f32_array("t.f32s"), (std::vector<float>{0.5f, -1e30f}));
  EXPECT_EQ(r.value("t.u8").integer, 200);
  EXPECT_EQ(r.value("t.i8").integer, -100);
  EXPECT_EQ(r.value("t.u16").integer, 60000);
  EXPECT_EQ(r.value("t.i16").integer, -30000);
  EXPECT_EQ(r.value("t.i64").integer, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(r.value("t.f64").type, GgufValueType::f64);
  EXPECT_EQ(r.value("t.f64").real, 1e300);
  const GgufValue& bools = r.value("t.bools");
  ASSERT_EQ(bools.items.size(), 2u);
  EXPECT_EQ(bools.elem_type, GgufValueType::boolean);
  EXPECT_EQ(bools.items[1].integer, 1);
  EXPECT_EQ(r.value("t.empty").elem_type, GgufValueType::u64);
  EXPECT_TRUE(r.value("t.empty").items.empty());
  const GgufValue* v = &r.value("t.nested");
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(v->type, GgufValueType::array);
    ASSERT_EQ(v->items.size(), 1u);
    v = &v->items[0];
  }
  EXPECT_EQ(v->type, GgufValueType::u8);
  EXPECT_EQ(v->integer, 7);

  // Offsets: each tensor padded to 32 bytes, in the order added (llama.cpp's rule).
  const auto& ts = r.tensors();
  ASSERT_EQ(ts.size(), 4u);
  const std::uint64_t data = ts[0].offset;
  EXPECT_EQ(data % 32, 0u);
  const std::uint64_t rel[] = {0, 32, 64, 160};
  const std::uint64_t nbytes[] = {24, 10, 68, 14};
  const std::uint32_t types[] = {0, 1, 8, 30};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ts[i].offset, data + rel[i]) << ts[i].name;
    EXPECT_EQ(ts[i].nbytes, nbytes[i]) << ts[i].name;
    EXPECT_EQ(ts[i].type, types[i]) << ts[i].name;
  }
  EXPECT_EQ(ts[3].dims, (std::vector<std::uint64_t>{7, 1, 1, 1}));
  EXPECT_EQ(ts[2].numel(), 64u);
  EXPECT_EQ(sum.bytes, data + 192);  // the last tensor padded too
  EXPECT_EQ(fs::file_size(path), data + 192);

  std::vector<float> f32b(6);
  r.read_bytes("a.weight", f32b.data());
  EXPECT_EQ(f32b, f32);
  std::vector<std::uint16_t> f16b(5);
  r.read_bytes("b", f16b.data());
  EXPECT_EQ(f16b, f16);
  std::vector<std::uint8_t> q8b(68);
  r.read_bytes("c.q", q8b.data());
  EXPECT_EQ(q8b, q8);
  std::vector<std::uint16_t> bf16b(7);
  r.read_bytes("d", bf16b.data());
  EXPECT_EQ(bf16b, bf16);
  ASSERT_NE(r.find("c.q"), nullptr);
  EXPECT_EQ(r.find("c.q")->name, "c.q");
  EXPECT_EQ(r.find("nope"), nullptr);
}

TEST_F(GgufTest, WritesExactlyTheBytesTheFormatDescribes) {
  GgufWriter w;
  w.add_u32("a.b", 7);
  const float data[2] = {1.0f, 2.0f};
  w.add_tensor("w", {2}, GgmlType::f32, data, sizeof data);
  const std::string path = file("tiny.gguf");
  w.write(path);

  // 24 header + 19 KV + 33 tensor info = 76, padded to 96; 8 data bytes padded to 32.
  std::string want;
  want += std::string("GGUF", 4);
  want += std::string("\x03\x00\x00\x00", 4);                  // version 3
  want += std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8);  // tensor_count 1
  want += std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8);  // metadata_kv_count 1
  want += std::string("\x03\x00\x00\x00\x00\x00\x00\x00", 8);  // key length 3
  want += "a.b";
  want += std::string("\x04\x00\x00\x00", 4);                  // type u32
  want += std::string("\x07\x00\x00\x00", 4);                  // 7
  want += std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8);  // name length 1
  want += "w";
  want += std::string("\x01\x00\x00\x00", 4);                  // n_dims 1
  want += std::string("\x02\x00\x00\x00\x00\x00\x00\x00", 8);  // ne0 2
  want += std::string("\x00\x00\x00\x00", 4);                  // type F32
  want += std::string("\x00\x00\x00\x00\x00\x00\x00\x00", 8);  // offset 0
  ASSERT_EQ(want.size(), 76u);
  want += std::string(20, '\0');
  want += std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  want += std::string(24, '\0');
  ASSERT_EQ(want.size(), 128u);
  EXPECT_EQ(slurp(path), want);

  const GgufReader r(path);
  ASSERT_EQ(r.tensors().size(), 1u);
  EXPECT_EQ(r.tensors()[0].offset, 96u);
  EXPECT_EQ(r.get_u32("a.b"), 7u);
}

TEST_F(GgufTest, AlignmentFromMetadata) {
  GgufWriter w;
  w.add_u32("general.alignment", 64);
  const float x[3] = {1, 2, 3};
  w.add_tensor("x", {3}, GgmlType::f32, x, sizeof x);
  w.add_tensor("y", {1}, GgmlType::f32, x, 4);
  const std::string path = file("a.gguf");
  w.write(path);
  const GgufReader r(path);
  EXPECT_EQ(r.alignment(), 64u);
  const std::uint64_t data = r.tensors()[0].offset;
  EXPECT_EQ(data % 64, 0u);
  EXPECT_EQ(r.tensors()[1].offset, data + 64);
  EXPECT_EQ(fs::file_size(path), data + 128);
}

TEST_F(GgufTest, FileWithoutTensorsEndsAfterItsMetadata) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  const std::string path = file("meta.gguf");
  w.write(path);
  EXPECT_EQ(fs::file_size(path), 24u + 8 + 20 + 4 + 8 + 5);
  const GgufReader r(path);
  EXPECT_TRUE(r.tensors().empty());
  EXPECT_EQ(r.get_string("general.architecture"), "llama");
}

TEST_F(GgufTest, WriterRefusesWhatTheReaderWould) {
  GgufWriter w;
  w.add_u32("a.b", 1);
  const float x[64] = {};
  w.add_tensor("w", {2}, GgmlType::f32, x, 8);
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };
  has(invalid_argument_of([&] { w.add_u32("a.b", 2); }), "a.b");
  has(invalid_argument_of([&] { w.add_u32("", 2); }), "empty");
  has(invalid_argument_of([&] { w.add_u32("a\nb", 2); }), "ASCII");
  has(invalid_argument_of([&] { w.add_u32("general.alignment", 48); }), "general.alignment");
  has(invalid_argument_of([&] { w.add_u64("general.alignment", 32); }), "u32");
  has(invalid_argument_of([&] { w.add_value("x.bool", scalar(GgufValueType::boolean, 2)); }),
      "x.bool");
  has(invalid_argument_of([&] { w.add_value("x.u8", scalar(GgufValueType::u8, 300)); }), "x.u8");
  has(invalid_argument_of([&] {
        w.add_value("x.mixed", array(GgufValueType::u8, {scalar(GgufValueType::i8, 1)}));
      }),
      "x.mixed");
  has(invalid_argument_of([&] { w.add_value("x.deep", nested(5)); }), "nested");
  has(invalid_argument_of(
          [&] { w.add_value("x.type", scalar(static_cast<GgufValueType>(13), 0)); }),
      "x.type");
  has(invalid_argument_of([&] { w.add_tensor("w", {2}, GgmlType::f32, x, 8); }), "'w'");
  has(invalid_argument_of([&] { w.add_tensor(std::string(64, 'n'), {2}, GgmlType::f32, x, 8); }),
      "63");
  has(invalid_argument_of([&] { w.add_tensor("v", {}, GgmlType::f32, x, 0); }), "n_dims 0");
  has(invalid_argument_of([&] {
        w.add_tensor("v", {1, 1, 1, 1, 1}, GgmlType::f32, x, 4);
      }),
      "n_dims 5");
  has(invalid_argument_of([&] { w.add_tensor("v", {0}, GgmlType::f32, x, 0); }), "'v'");
  has(invalid_argument_of([&] { w.add_tensor("v", {2}, GgmlType::f32, x, 4); }), "'v'");
  has(invalid_argument_of([&] { w.add_tensor("v", {33}, GgmlType::q8_0, x, 34); }), "32");
  has(invalid_argument_of([&] { w.add_tensor("v", {1}, static_cast<GgmlType>(2), x, 4); }), "'v'");
  has(invalid_argument_of([&] { w.add_tensor("v", {1}, GgmlType::f32, nullptr, 4); }), "null");
  // What was refused was not added: the file still reads as one key and one tensor.
  const std::string path = file("ok.gguf");
  w.write(path);
  const GgufReader r(path);
  EXPECT_EQ(r.keys().size(), 1u);
  EXPECT_EQ(r.tensors().size(), 1u);
}

TEST_F(GgufTest, GettersWantTheExactType) {
  GgufWriter w;
  w.add_u64("n", 5);
  w.add_f32_array("f", {1});
  const std::string path = file("g.gguf");
  w.write(path);
  const GgufReader r(path);
  std::string e = error_of([&] { (void)r.get_u32("n"); });
  EXPECT_NE(e.find(path + ": metadata n: type u64, expected u32"), std::string::npos) << e;
  e = error_of([&] { (void)r.get_i32_array("f"); });
  EXPECT_NE(e.find(path + ": metadata f: type array of f32, expected array of i32"),
            std::string::npos)
      << e;
  e = error_of([&] { (void)r.get_string("absent.key"); });
  EXPECT_NE(e.find(path + ": metadata absent.key: missing"), std::string::npos) << e;
  e = error_of([&] {
    char b;
    r.read_bytes("nope", &b);
  });
  EXPECT_NE(e.find(path + ": tensor 'nope'"), std::string::npos) << e;
}

TEST_F(GgufTest, UnknownTensorTypesAreListedButNotRead) {
  const std::string bytes = assemble(2, 0, "", info("q4", {32}, 2, 0) + info("f", {4}, 0, 32),
                                     std::string(32, '\x11') + std::string(16, '\x22'));
  const std::string path = write("u.gguf", bytes);
  const GgufReader r(path);
  ASSERT_EQ(r.tensors().size(), 2u);
  EXPECT_EQ(r.tensors()[0].type, 2u);
  EXPECT_EQ(r.tensors()[0].nbytes, 0u);
  EXPECT_EQ(r.tensors()[1].nbytes, 16u);
  const std::string e = error_of([&] {
    char b[32];
    r.read_bytes("q4", b);
  });
  EXPECT_NE(e.find(path + ": tensor 'q4': ggml type 2 (type 2)"), std::string::npos) << e;
  float f[4];
  r.read_bytes("f", f);
}

TEST_F(GgufTest, EveryTruncationIsRefusedNamingTheFileAndField) {
  GgufWriter w;
  w.add_u32("a.u32", 1);
  w.add_string("a.s", "text");
  w.add_string_array("a.strings", {"x", "yz"});
  w.add_value("a.nested", nested(2));
  w.add_bool("a.b", false);
  const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  w.add_tensor("t0", {3}, GgmlType::f32, x, 12);
  w.add_tensor("t1", {2, 2}, GgmlType::f32, x, 16);
  const std::string full_path = file("full.gguf");
  w.write(full_path);
  const std::string full = slurp(full_path);
  const GgufReader r(full_path);
  const std::uint64_t data_end = r.tensors()[1].offset + r.tensors()[1].nbytes;
  ASSERT_LT(data_end, full.size());
  for (std::size_t n = 0; n <= full.size(); ++n) {
    const std::string path = write("cut.gguf", full.substr(0, n));
    if (n >= data_end) {  // only the last tensor's padding is missing
      EXPECT_NO_THROW(GgufReader{path}) << n;
      continue;
    }
    const std::string e = error_of([&] { GgufReader{path}; });
    EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << n << ": " << e;
    const bool field = e.find(": header ") != e.npos || e.find(": metadata ") != e.npos ||
                       e.find(": tensor ") != e.npos;
    EXPECT_TRUE(field) << n << ": " << e;
  }
}

struct Hostile {
  const char* name;
  std::string bytes;
  std::vector<std::string> says;  // each must appear in the message, after the path
};

std::vector<Hostile> hostile_files() {
  const std::string kv = kv_u32("a.b", 7);
  const std::string w = info("w", {8}, 0, 0);
  const std::string data(32, '\x01');
  auto valid = [&](const std::string& kvs, std::uint64_t n_kv, const std::string& infos,
                   std::uint64_t n_t,
                   const std::string& d) { return assemble(n_t, n_kv, kvs, infos, d); };
  const std::uint64_t big = std::uint64_t{1} << 62;
  std::vector<Hostile> out;
  std::string s = valid(kv, 1, w, 1, data);
  s[3] = 'X';
  out.push_back({"bad magic", s, {"header magic", "not a GGUF file"}});
  s = valid(kv, 1, w, 1, data);
  s[4] = 2;
  out.push_back({"version 2", s, {"header version: found 2, expected 3", "v2"}});
  s[4] = 1;
  out.push_back({"version 1", s, {"header version: found 1"}});
  s[4] = 0;
  s[7] = 3;
  out.push_back({"big-endian", s, {"header version", "big-endian"}});
  out.push_back({"huge tensor_count",
                 header(std::uint64_t{1} << 63, 1) + kv + w + data,
                 {"header tensor_count", "9223372036854775808 tensors"}});
  out.push_back({"huge kv count",
                 header(1, std::uint64_t{1} << 40) + kv + w + data,
                 {"header metadata_kv_count", "1099511627776 key-value pairs"}});
  out.push_back({"huge key length",
                 header(0, 1) + Bytes().u64(big).u32(4).u32(7).s,
                 {"metadata key #0 (of 1)", "key length 4611686018427387904"}});
  out.push_back({"huge string length",
                 header(0, 1) + Bytes().str("a.s").u32(8).u64(big).raw("abc").s,
                 {"metadata a.s", "string length 4611686018427387904 goes past the end"}});
  out.push_back({"huge array count",
                 header(0, 1) + Bytes().str("a.arr").u32(9).u32(4).u64(big).u32(1).s,
                 {"metadata a.arr", "array count 4611686018427387904 of u32"}});
  out.push_back({"string array count past the file",
                 header(0, 1) + Bytes().str("a.arr").u32(9).u32(8).u64(3).str("x").s,
                 {"metadata a.arr", "array count 3 of string"}});
  out.push_back(
      {"duplicate key", valid(kv + kv, 2, w, 1, data), {"metadata a.b", "more than once"}});
  out.push_back(
      {"empty key", header(0, 1) + Bytes().str("").u32(4).u32(7).s, {"metadata key #0", "empty"}});
  out.push_back({"control byte in a key",
                 header(0, 1) + Bytes().str("a\x01").u32(4).u32(7).s,
                 {"metadata key #0", "not printable ASCII"}});
  out.push_back({"value type 13",
                 header(0, 1) + Bytes().str("a.b").u32(13).u32(7).s,
                 {"metadata a.b", "value type 13 is not a GGUF value type"}});
  out.push_back({"array element type 13",
                 header(0, 1) + Bytes().str("a.b").u32(9).u32(13).u64(0).s,
                 {"metadata a.b", "array element type 13"}});
  out.push_back({"bool 2",
                 header(0, 1) + Bytes().str("a.t").u32(7).u8(2).raw("pad").s,
                 {"metadata a.t", "bool value 2 is not 0 or 1"}});
  {
    Bytes b;
    b.str("a.n").u32(9);
    for (int i = 0; i < 5; ++i) b.u32(9).u64(1);  // arrays of arrays, 5 deep
    out.push_back({"arrays nested 5 deep",
                   header(0, 1) + b.u32(0).u64(0).s,
                   {"metadata a.n", "nested more than 4 deep"}});
  }
  out.push_back({"bool inside an array",
                 header(0, 1) + Bytes().str("a.bs").u32(9).u32(7).u64(2).u8(1).u8(5).s,
                 {"metadata a.bs", "array element 1: bool value 5"}});
  out.push_back({"alignment 48",
                 valid(kv_u32("general.alignment", 48), 1, w, 1, data),
                 {"metadata general.alignment", "48 is not a power of two"}});
  out.push_back({"alignment 0",
                 valid(kv_u32("general.alignment", 0), 1, w, 1, data),
                 {"metadata general.alignment", "0 is not a power of two"}});
  out.push_back({"alignment u64",
                 valid(Bytes().str("general.alignment").u32(10).u64(32).s, 1, w, 1, data),
                 {"metadata general.alignment", "type u64, llama.cpp requires u32"}});
  out.push_back({"duplicate tensor",
                 valid(kv, 1, w + info("w", {8}, 0, 32), 2, data + data),
                 {"tensor 'w'", "more than once"}});
  out.push_back({"tensor name of 64 bytes",
                 valid(kv, 1, info(std::string(64, 'n'), {8}, 0, 0), 1, data),
                 {"tensor #0 (of 1)", "over llama.cpp's limit of 63"}});
  out.push_back({"empty tensor name",
                 valid(kv, 1, info("", {8}, 0, 0), 1, data),
                 {"tensor #0 (of 1)", "empty"}});
  out.push_back({"NUL in a tensor name",
                 valid(kv, 1, info(std::string("a\0b", 3), {8}, 0, 0), 1, data),
                 {"tensor #0 (of 1)", "control byte"}});
  out.push_back({"n_dims 5",
                 valid(kv, 1, info("w", {8, 1, 1, 1, 1}, 0, 0), 1, data),
                 {"tensor 'w'", "n_dims 5 is not 1..4"}});
  out.push_back({"n_dims 0",
                 valid(kv, 1, info("w", {}, 0, 0), 1, data),
                 {"tensor 'w'", "n_dims 0 is not 1..4"}});
  out.push_back(
      {"a dim of 0", valid(kv, 1, info("w", {8, 0}, 0, 0), 1, data), {"tensor 'w'", "hold a 0"}});
  out.push_back({"overflowing dims",
                 valid(kv, 1, info("w", {1u << 31, 1u << 31, 1u << 31}, 0, 0), 1, data),
                 {"tensor 'w'", "overflow"}});
  out.push_back({"bytes past 2^63",
                 valid(kv, 1, info("w", {big}, 0, 0), 1, data),
                 {"tensor 'w'", "more than 2^63 - 1 bytes"}});
  out.push_back({"misaligned offset",
                 valid(kv, 1, info("w", {4}, 0, 4), 1, data),
                 {"tensor 'w'", "offset 4 is not a multiple of the alignment 32"}});
  out.push_back({"overlapping tensors",
                 valid(kv, 1, info("w", {16}, 0, 0) + info("v", {8}, 0, 32), 2, data + data),
                 {"tensor 'v'", "overlap those of tensor 'w'"}});
  out.push_back({"data past the end",
                 valid(kv, 1, info("w", {8}, 0, 32), 1, data),
                 {"tensor 'w'", "go past the end of the file"}});
  out.push_back({"huge offset",
                 valid(kv, 1, info("w", {8}, 0, big), 1, data),
                 {"tensor 'w'", "go past the end of the file"}});
  out.push_back({"q8_0 row of 33",
                 valid(kv, 1, info("q", {33, 2}, 8, 0), 1, data + data + data),
                 {"tensor 'q'", "Q8_0 needs ne0 (dims[0]) to be a multiple of 32, found 33"}});
  return out;
}

TEST_F(GgufTest, HostileFilesAreRefusedNamingTheFileAndField) {
  for (const Hostile& h : hostile_files()) {
    SCOPED_TRACE(h.name);
    const std::string path = write("hostile.gguf", h.bytes);
    const std::string e = error_of([&] { GgufReader{path}; });
    EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
    for (const std::string& part : h.says) EXPECT_NE(e.find(part), std::string::npos) << e;
  }
}

}  // namespace
