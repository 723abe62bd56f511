// safetensors and atomic file writes: round trips through our writer and reader, files built byte
// by byte from the format description (so reader and writer cannot share a mistake), every
// refusal the reader promises with a message that names the file and the problem, and the
// guarantees of write_file_atomic when the write cannot happen.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "whtlm/io.hpp"

namespace {

namespace fs = std::filesystem;
using whtlm::io::DType;
using whtlm::io::SafetensorsReader;
using whtlm::io::TensorToWrite;

// A fresh folder per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "whtlm_io_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// The message of the std::runtime_error that `f` throws, or a failure if it throws none.
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

// A safetensors file assembled by hand: little-endian u64 length, the JSON text, the data.
std::string hand_built(const std::string& json, const std::string& data) {
  std::string out;
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + json + data;
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::uint64_t header_length(const std::string& file_bytes) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file_bytes[i]);
  return n;
}

TEST(DType, NamesAndSizesFollowTheSafetensorsSpelling) {
  struct Case {
    DType d;
    const char* name;
    std::size_t size;
  };
  for (Case c :
       {Case{DType::f32, "F32", 4}, Case{DType::f64, "F64", 8}, Case{DType::f16, "F16", 2},
        Case{DType::bf16, "BF16", 2}, Case{DType::i32, "I32", 4}, Case{DType::i64, "I64", 8},
        Case{DType::u16, "U16", 2}, Case{DType::u8, "U8", 1}}) {
    EXPECT_STREQ(whtlm::io::dtype_name(c.d), c.name);
    EXPECT_EQ(whtlm::io::dtype_size(c.d), c.size);
    EXPECT_EQ(whtlm::io::dtype_from_name(c.name), c.d);
  }
  EXPECT_FALSE(whtlm::io::dtype_from_name("BOOL").has_value());
  EXPECT_FALSE(whtlm::io::dtype_from_name("f32").has_value());
}

TEST_F(SafetensorsTest, RoundTripKeepsDtypesShapesScalarsEmptyTensorsAndMetadata) {
  std::vector<float> w(6);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * static_cast<float>(i) - 1.0f;
  std::vector<double> d = {3.25, -1e300};
  std::vector<std::uint16_t> h = {0x3c00, 0xc000, 0x7bff};  // f16 / bf16 bits
  std::vector<std::int32_t> scalar = {-42};
  std::vector<std::int64_t> big = {std::int64_t{1} << 40, -7};
  std::vector<std::uint8_t> bytes = {1, 2, 3, 250, 251};

  const std::vector<TensorToWrite> tensors = {
      {"wte.weight", DType::f32, {2, 3}, w.data()}, {"a.f64", DType::f64, {2}, d.data()},
      {"h.f16", DType::f16, {3}, h.data()},         {"h.bf16", DType::bf16, {1, 3}, h.data()},
      {"step", DType::i32, {}, scalar.data()},      {"big", DType::i64, {2, 1}, big.data()},
      {"tok", DType::u16, {3}, h.data()},           {"raw", DType::u8, {5}, bytes.data()},
      {"empty", DType::f32, {0, 4}, nullptr},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "h\u00e9llo \"q\""}};
  const std::string path = file("model.safetensors");
  whtlm::io::write_safetensors(path, tensors, meta);

  SafetensorsReader r(path);
  EXPECT_EQ(r.path(), path);
  EXPECT_EQ(r.metadata(), meta);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a.f64", "big", "empty", "h.bf16", "h.f16", "raw",
                                                 "step", "tok", "wte.weight"}));
  for (const TensorToWrite& t : tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(r.contains(t.name));
    const auto& info = r.info(t.name);
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    EXPECT_EQ(info.nbytes, info.numel() * whtlm::io::dtype_size(t.dtype));
    if (info.nbytes > 0) {
      std::vector<unsigned char> got(info.nbytes);
      r.read_bytes(t.name, got.data());
      EXPECT_EQ(std::memcmp(got.data(), t.data, info.nbytes), 0);
    }
  }
  EXPECT_EQ(r.info("step").numel(), 1u);
  EXPECT_EQ(r.info("empty").numel(), 0u);
  EXPECT_FALSE(r.contains("missing"));

  std::vector<float> w2(6);
  r.read_f32("wte.weight", {2, 3}, w2.data());
  EXPECT_EQ(w2, w);
  std::int32_t s = 0;
  r.read_i32("step", {}, &s);
  EXPECT_EQ(s, -42);
  r.read_f32("empty", {0, 4}, nullptr);  // nothing to copy
}

TEST_F(SafetensorsTest, WriterLaysOutDataInGivenOrderRightAfterAHeaderPaddedToEight) {
  std::vector<float> a = {1, 2, 3};
  std::vector<std::uint8_t> b = {9};
  std::vector<float> c = {4};
  const std::string path = file("o.safetensors");
  // Several name lengths, so that at least one header needs padding.
  for (std::string name : {"x", "xy", "xyz", "wxyz"}) {
    whtlm::io::write_safetensors(path, {{"z" + name, DType::f32, {3}, a.data()},
                                        {"b", DType::u8, {1}, b.data()},
                                        {"a", DType::f32, {1}, c.data()}});
    const std::string raw = whtlm::io::read_file(path);
    const std::uint64_t n = header_length(raw);
    EXPECT_EQ(n % 8, 0u);
    ASSERT_EQ(raw.size(), 8 + n + 12 + 1 + 4);
    const std::string json = raw.substr(8, n);
    EXPECT_EQ(json.front(), '{');
    EXPECT_EQ(json.find_last_not_of(' '), json.find_last_of('}'));  // only spaces after the JSON
    EXPECT_EQ(raw.substr(8 + n), bytes_of(a) + bytes_of(b) + bytes_of(c));
    SafetensorsReader r(path);
    EXPECT_EQ(r.info("z" + name).offset, 0u);
    EXPECT_EQ(r.info("b").offset, 12u);
    EXPECT_EQ(r.info("a").offset, 13u);
    EXPECT_TRUE(r.metadata().empty());
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
}

TEST_F(SafetensorsTest, WriterOfNoTensorsMakesAValidFile) {
  const std::string path = file("empty.safetensors");
  whtlm::io::write_safetensors(path, {}, {{"k", "v"}});
  SafetensorsReader r(path);
  EXPECT_TRUE(r.names().empty());
  EXPECT_EQ(r.metadata().at("k"), "v");
}

TEST_F(SafetensorsTest, ReaderAcceptsHandBuiltFileWithOffsetsNotInNameOrder) {
  // "a" comes first by name but its bytes come last; the header is unpadded, so the data
  // section starts at an odd address; key order in the JSON differs from both.
  std::vector<float> b = {1.5f, -2.0f};
  std::vector<std::int32_t> a = {7, 8, 9};
  std::vector<std::uint16_t> c = {0xbeef};
  const std::string json = R"({"c":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},)"
                           R"("__metadata__":{"format":"pt"},)"
                           R"("a":{"dtype":"I32","shape":[3, 1],"data_offsets":[10,22]},)"
                           R"( "b" : {"data_offsets":[0,8],"shape":[2],"dtype":"F32"}})";
  ASSERT_NE(json.size() % 8, 0u);
  const std::string path = file("hand.safetensors");
  whtlm::io::write_file_atomic(path, hand_built(json, bytes_of(b) + bytes_of(c) + bytes_of(a)));

  SafetensorsReader r(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(r.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(r.info("a").offset, 10u);
  EXPECT_EQ(r.info("a").shape, (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(r.info("c").dtype, DType::bf16);
  std::vector<float> b2(2);
  r.read_f32("b", {2}, b2.data());
  EXPECT_EQ(b2, b);
  std::vector<std::int32_t> a2(3);
  r.read_i32("a", {3, 1}, a2.data());
  EXPECT_EQ(a2, a);
  std::uint16_t c2 = 0;
  r.read_bytes("c", &c2);
  EXPECT_EQ(c2, 0xbeef);
}

TEST_F(SafetensorsTest, ReaderAcceptsHeaderPaddedWithTrailingSpaces) {
  std::vector<float> x = {3};
  const std::string path = file("pad.safetensors");
  whtlm::io::write_file_atomic(
      path,
      hand_built(R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})" + std::string(5, ' '),
                 bytes_of(x)));
  float got = 0;
  SafetensorsReader(path).read_f32("x", {}, &got);
  EXPECT_EQ(got, 3.0f);
}

TEST_F(SafetensorsTest, ReaderIsMovable) {
  std::vector<float> x = {1, 2};
  const std::string path = file("m.safetensors");
  whtlm::io::write_safetensors(path, {{"x", DType::f32, {2}, x.data()}});
  SafetensorsReader a(path);
  SafetensorsReader b(std::move(a));
  SafetensorsReader c(path);
  c = std::move(b);
  std::vector<float> got(2);
  c.read_f32("x", {2}, got.data());
  EXPECT_EQ(got, x);
}

// --- Reader refusals --------------------------------------------------------------------------

TEST_F(SafetensorsTest, MissingFileErrorNamesPathAndReason) {
  const std::string path = file("nope.safetensors");
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, FileShorterThanEightBytesIsRefused) {
  const std::string path = file("short.safetensors");
  whtlm::io::write_file_atomic(path, std::string("\x02\0\0\0", 4));
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find(path + ": file is 4 bytes, too short"), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, HeaderLengthPastEndIsRefused) {
  const std::string path = file("len.safetensors");
  std::string bytes = hand_built("{}", "");
  bytes[0] = 100;  // claims 100 bytes of JSON, the file has 2
  whtlm::io::write_file_atomic(path, bytes);
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find(path + ": header length 100 goes past the end"), std::string::npos) << msg;

  // A huge length must not wrap around in the bounds arithmetic.
  whtlm::io::write_file_atomic(path, std::string(8, '\xff') + "{}");
  EXPECT_NE(error_of([&] { SafetensorsReader r(path); }).find("goes past the end"),
            std::string::npos);
}

TEST_F(SafetensorsTest, TruncatedDataIsRefusedWithBothSizes) {
  const std::string path = file("trunc.safetensors");
  whtlm::io::write_file_atomic(
      path, hand_built(R"({"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}})",
                       std::string(40, '\0')));
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find(path + ": truncated: header says 64 bytes of tensor data, file has 40"),
            std::string::npos)
      << msg;
}

TEST_F(SafetensorsTest, BadJsonIsRefused) {
  const std::string path = file("json.safetensors");
  for (const std::string& json :
       {std::string(R"({"w":{"dtype":"F32",)"), std::string("[1,2]"), std::string(R"({"w":5})")}) {
    SCOPED_TRACE(json);
    whtlm::io::write_file_atomic(path, hand_built(json, ""));
    const std::string msg = error_of([&] { SafetensorsReader r(path); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_TRUE(msg.find("JSON") != std::string::npos) << msg;
  }
}

TEST_F(SafetensorsTest, RepeatedTensorNameInHeaderIsRefused) {
  const std::string path = file("dup.safetensors");
  whtlm::io::write_file_atomic(path,
                               hand_built(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                          R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                          "ab"));
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("'w' more than once"), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, UnknownDtypeIsRefused) {
  const std::string path = file("dtype.safetensors");
  whtlm::io::write_file_atomic(
      path, hand_built(R"({"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", "\1\0"));
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find(path + ": tensor 'mask': unknown dtype \"BOOL\""), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, OffsetsThatDisagreeWithShapeAreRefused) {
  const std::string path = file("span.safetensors");
  whtlm::io::write_file_atomic(
      path, hand_built(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
                       std::string(24, '\0')));
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("tensor 'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("span 20 bytes, but F32 [2, 3] needs 24"), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, MalformedEntriesAreRefused) {
  const std::string path = file("bad.safetensors");
  const std::string data(16, '\0');
  struct Case {
    const char* json;
    const char* expect;
  };
  for (Case c : {
           Case{R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "non-negative"},
           Case{R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "non-negative"},
           Case{R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "\"shape\""},
           Case{R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "\"dtype\""},
           Case{R"({"w":{"dtype":"F32","shape":[1]}})", "\"data_offsets\""},
           Case{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "begin <= end"},
           Case{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", "data_offsets"},
           Case{R"({"w":{"dtype":"U8","shape":[4611686018427387904,8],"data_offsets":[0,4]}})",
                "too large"},
           Case{R"({"__metadata__":{"n":1}})", "not a string"},
           Case{R"({"__metadata__":[]})", "__metadata__"},
       }) {
    SCOPED_TRACE(c.json);
    whtlm::io::write_file_atomic(path, hand_built(c.json, data));
    const std::string msg = error_of([&] { SafetensorsReader r(path); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
  }
}

TEST_F(SafetensorsTest, OverlappingTensorsAreRefused) {
  const std::string path = file("overlap.safetensors");
  whtlm::io::write_file_atomic(
      path, hand_built(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                       R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                       std::string(12, '\0')));
  const std::string msg = error_of([&] { SafetensorsReader r(path); });
  EXPECT_NE(msg.find("tensors 'a' and 'b' overlap"), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, ReadWithWrongShapeOrDtypeNamesTensorAndBothShapes) {
  std::vector<float> w(6, 1.0f);
  std::vector<std::int32_t> ids = {1, 2};
  const std::string path = file("w.safetensors");
  whtlm::io::write_safetensors(
      path, {{"w", DType::f32, {2, 3}, w.data()}, {"ids", DType::i32, {2}, ids.data()}});
  SafetensorsReader r(path);
  std::vector<float> dst(6, 0.0f);

  std::string msg = error_of([&] { r.read_f32("w", {3, 2}, dst.data()); });
  EXPECT_NE(msg.find(path + ": tensor 'w': expected F32 [3, 2], found F32 [2, 3]"),
            std::string::npos)
      << msg;
  msg = error_of([&] { r.read_f32("w", {6}, dst.data()); });
  EXPECT_NE(msg.find("expected F32 [6], found F32 [2, 3]"), std::string::npos) << msg;
  EXPECT_EQ(dst, std::vector<float>(6, 0.0f));  // nothing copied on refusal

  msg = error_of([&] { r.read_f32("ids", {2}, dst.data()); });
  EXPECT_NE(msg.find(path + ": tensor 'ids': expected F32 [2], found I32 [2]"), std::string::npos)
      << msg;
  msg = error_of([&] { r.read_i32("w", {2, 3}, ids.data()); });
  EXPECT_NE(msg.find("tensor 'w': expected I32 [2, 3], found F32 [2, 3]"), std::string::npos)
      << msg;

  msg = error_of([&] { r.info("wpe"); });
  EXPECT_NE(msg.find(path + ": no tensor named 'wpe'"), std::string::npos) << msg;
  unsigned char byte = 0;
  msg = error_of([&] { r.read_bytes("wpe", &byte); });
  EXPECT_NE(msg.find("'wpe'"), std::string::npos) << msg;
}

// --- Writer refusals --------------------------------------------------------------------------

TEST_F(SafetensorsTest, WriterRejectsDuplicateReservedEmptyAndNegativeAndLeavesNoFile) {
  float x = 1;
  const std::string path = file("rej.safetensors");
  struct Case {
    std::vector<TensorToWrite> tensors;
    const char* expect;
  };
  for (const Case& c : {
           Case{{{"a", DType::f32, {}, &x}, {"a", DType::f32, {}, &x}}, "more than once"},
           Case{{{"__metadata__", DType::f32, {}, &x}}, "reserved"},
           Case{{{"__x", DType::f32, {}, &x}}, "reserved"},
           Case{{{"", DType::f32, {}, &x}}, "empty name"},
           Case{{{"n", DType::f32, {-1}, &x}}, "negative"},
           Case{{{"p", DType::f32, {1}, nullptr}}, "null"},
       }) {
    const std::string msg = error_of([&] { whtlm::io::write_safetensors(path, c.tensors); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
}

// --- Files ------------------------------------------------------------------------------------

TEST_F(SafetensorsTest, ReadFileReturnsExactBytesAndNamesMissingPath) {
  const std::string path = file("bytes.bin");
  const std::string bytes("a\0b\xff\n", 5);
  whtlm::io::write_file_atomic(path, bytes);
  EXPECT_EQ(whtlm::io::read_file(path), bytes);
  whtlm::io::write_file_atomic(path, "");
  EXPECT_EQ(whtlm::io::read_file(path), "");

  std::string msg = error_of([&] { whtlm::io::read_file(file("absent")); });
  EXPECT_NE(msg.find(file("absent") + ": "), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
  msg = error_of([&] { whtlm::io::read_file(dir_.string()); });
  EXPECT_NE(msg.find("a folder, where a regular file is needed"), std::string::npos) << msg;
}

TEST_F(SafetensorsTest, WriteFileAtomicReplacesOldContentsAndLeavesNoTemp) {
  const std::string path = file("f.txt");
  whtlm::io::write_file_atomic(path, "first version, longer");
  whtlm::io::write_file_atomic(path, "second");
  EXPECT_EQ(whtlm::io::read_file(path), "second");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, WriteFileAtomicKeepsOldFileWhenFolderIsNotWritable) {
  const std::string path = file("keep.txt");
  whtlm::io::write_file_atomic(path, "old");
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  if (::access(dir_.c_str(), W_OK) == 0) {
    // Running as root (or with CAP_DAC_OVERRIDE): permissions do not stop us.
    fs::permissions(dir_, fs::perms::owner_all);
    GTEST_SKIP() << "folder permissions are not enforced for this user";
  }
  const std::string msg = error_of([&] { whtlm::io::write_file_atomic(path, "new"); });
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_NE(msg.find(path + ": cannot create temporary file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
  EXPECT_EQ(whtlm::io::read_file(path), "old");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, WriteFileAtomicFailsCleanlyWhenFolderDoesNotExist) {
  const std::string path = file("no_such_folder/out.txt");
  const std::string msg = error_of([&] { whtlm::io::write_file_atomic(path, "x"); });
  EXPECT_NE(msg.find(path + ": cannot create temporary file"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, WriteFileAtomicOntoDirectoryLeavesItAndNoTemp) {
  const std::string path = file("a_dir");
  fs::create_directory(path);
  whtlm::io::write_file_atomic(path + "/inside.txt", "kept");
  const std::string msg = error_of([&] { whtlm::io::write_file_atomic(path, "x"); });
  EXPECT_NE(msg.find(path + ": cannot rename"), std::string::npos) << msg;
  EXPECT_TRUE(fs::is_directory(path));
  EXPECT_EQ(whtlm::io::read_file(path + "/inside.txt"), "kept");
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // The safetensors writer goes through the same path.
  float x = 1;
  EXPECT_THROW(whtlm::io::write_safetensors(path, {{"x", DType::f32, {}, &x}}), std::runtime_error);
  EXPECT_TRUE(fs::is_directory(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, WriteFileAtomicWithRemovesTempWhenCallbackThrows) {
  const std::string path = file("cb.txt");
  whtlm::io::write_file_atomic(path, "old");
  EXPECT_THROW(whtlm::io::write_file_atomic_with(path,
                                                 [](whtlm::io::AtomicWriter& w) {
                                                   w.write("partial new");
                                                   throw std::logic_error("stop");
                                                 }),
               std::logic_error);
  EXPECT_EQ(whtlm::io::read_file(path), "old");
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  whtlm::io::write_file_atomic_with(path, [](whtlm::io::AtomicWriter& w) {
    w.write("ab");
    w.write("cd", 1);
    EXPECT_EQ(w.bytes_written(), 3u);
  });
  EXPECT_EQ(whtlm::io::read_file(path), "abc");
}

}  // namespace
