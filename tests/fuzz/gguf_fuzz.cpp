// Fuzzes the GGUF reader (io::GgufReader): the input is a whole .gguf file. Accepted files
// must keep the reader's promises: every key's value is there, the typed getter of its
// own type returns it and the others throw naming the file; every tensor of a known type
// has the bytes its dims and type give, aligned and inside the file, and reads; one of an
// unknown type refuses to read naming the file. Then the file is written again through
// io::GgufWriter (every key, every tensor of a known type) and read back: the same keys,
// values, tensor infos and bytes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "whtlm/gguf.hpp"

namespace {

using namespace whtlm;
using io::GgufValue;
using io::GgufValueType;

bool same_real(double a, double b, GgufValueType t) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (t == GgufValueType::f32) return static_cast<float>(a) == static_cast<float>(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool same(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case GgufValueType::f32:
    case GgufValueType::f64:
      return same_real(a.real, b.real, a.type);
    case GgufValueType::string:
      return a.text == b.text;
    case GgufValueType::array:
      if (a.elem_type != b.elem_type || a.items.size() != b.items.size()) return false;
      for (std::size_t i = 0; i < a.items.size(); ++i)
        if (!same(a.items[i], b.items[i])) return false;
      return true;
    default:
      return a.integer == b.integer;
  }
}

// Each typed getter on `key`: the one of its type returns the value, the others throw
// naming the file.
void check_getters(const io::GgufReader& r, const std::string& key) {
  const GgufValue& v = r.value(key);
  const std::string& path = r.path();
  const std::string k = fuzz::quote(key);
  auto arr = [&](GgufValueType e) { return v.type == GgufValueType::array && v.elem_type == e; };
  auto getter = [&](bool right, const char* name, auto&& get) {
    if (right) {
      fuzz::expect_no_throw(std::string(name) + " of '" + k + "'", get);
    } else {
      fuzz::check(!fuzz::expect_clean({path}, get), std::string(name) + " of '" + k + "' (" +
                                                        io::gguf_value_type_name(v.type) +
                                                        ") did not throw");
    }
  };
  getter(v.type == GgufValueType::u32, "get_u32", [&] {
    fuzz::check(r.get_u32(key) == static_cast<std::uint32_t>(v.integer), "get_u32 differs");
  });
  getter(v.type == GgufValueType::f32, "get_f32",
         [&] { fuzz::check(same_real(r.get_f32(key), v.real, v.type), "get_f32 differs"); });
  getter(v.type == GgufValueType::boolean, "get_bool",
         [&] { fuzz::check(r.get_bool(key) == (v.integer != 0), "get_bool differs"); });
  getter(v.type == GgufValueType::string, "get_string",
         [&] { fuzz::check(r.get_string(key) == v.text, "get_string differs"); });
  getter(arr(GgufValueType::string), "get_string_array",
         [&] { fuzz::check(r.get_string_array(key).size() == v.items.size(), "size differs"); });
  getter(arr(GgufValueType::i32), "get_i32_array",
         [&] { fuzz::check(r.get_i32_array(key).size() == v.items.size(), "size differs"); });
  getter(arr(GgufValueType::f32), "get_f32_array",
         [&] { fuzz::check(r.get_f32_array(key).size() == v.items.size(), "size differs"); });
}

// The bytes of every tensor of a known type, by index (empty for the others).
std::vector<std::vector<unsigned char>> check_tensors(const io::GgufReader& r,
                                                      std::uint64_t file_size) {
  std::vector<std::vector<unsigned char>> bytes;
  for (const io::GgufTensorInfo& t : r.tensors()) {
    const std::string n = "tensor '" + fuzz::quote(t.name) + "': ";
    fuzz::check(r.find(t.name) == &t, n + "find() does not give it");
    fuzz::check(!t.dims.empty() && t.dims.size() <= 4, n + "n_dims not 1..4");
    bytes.emplace_back();
    if (!io::ggml_type_known(t.type)) {
      fuzz::check(t.nbytes == 0, n + "unknown type with nbytes");
      unsigned char b = 0;
      fuzz::check(!fuzz::expect_clean({r.path()}, [&] { r.read_bytes(t.name, &b); }),
                  n + "read_bytes of an unknown type did not throw");
      continue;
    }
    const auto type = static_cast<io::GgmlType>(t.type);
    const std::uint64_t rows = t.numel() / t.dims[0];
    fuzz::check(io::ggml_row_bytes(type, t.dims[0]) * rows == t.nbytes,
                n + "nbytes " + std::to_string(t.nbytes) + " does not match its dims and type");
    fuzz::check(t.offset % r.alignment() == 0, n + "offset not aligned");
    fuzz::check(t.offset <= file_size && t.nbytes <= file_size - t.offset,
                n + "data past the end of the file");
    bytes.back().resize(t.nbytes);
    r.read_bytes(t.name, bytes.back().data());
  }
  return bytes;
}

void round_trip(const io::GgufReader& r, const std::vector<std::vector<unsigned char>>& bytes) {
  io::GgufWriter w;
  for (const std::string& key : r.keys()) w.add_value(key, r.value(key));
  std::vector<const io::GgufTensorInfo*> kept;
  for (std::size_t i = 0; i < r.tensors().size(); ++i) {
    const io::GgufTensorInfo& t = r.tensors()[i];
    if (!io::ggml_type_known(t.type)) continue;
    w.add_tensor(t.name, t.dims, static_cast<io::GgmlType>(t.type), bytes[i].data(),
                 bytes[i].size());
    kept.push_back(&t);
  }
  const std::string again = fuzz::scratch_dir() + "/again.gguf";
  w.write(again);
  const io::GgufReader b(again);
  fuzz::check(b.keys() == r.keys(), "written again: the keys differ");
  for (const std::string& key : r.keys())
    fuzz::check(same(b.value(key), r.value(key)),
                "written again: the value of '" + fuzz::quote(key) + "' differs");
  fuzz::check(b.alignment() == r.alignment(), "written again: the alignment differs");
  fuzz::check(b.tensors().size() == kept.size(), "written again: the tensor count differs");
  for (std::size_t i = 0; i < kept.size(); ++i) {
    const io::GgufTensorInfo& x = *kept[i];
    const io::GgufTensorInfo& y = b.tensors()[i];
    const std::string n = "written again: tensor '" + fuzz::quote(x.name) + "': ";
    fuzz::check(x.name == y.name && x.dims == y.dims && x.type == y.type && x.nbytes == y.nbytes,
                n + "the info differs");
    std::vector<unsigned char> got(y.nbytes);
    b.read_bytes(y.name, got.data());
    const std::size_t index = static_cast<std::size_t>(&x - r.tensors().data());
    fuzz::check(got == bytes[index], n + "the bytes differ");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::init_once();
  const std::string path = fuzz::write_input("model.gguf", data, size);
  fuzz::expect_clean({path}, [&] {
    const io::GgufReader r(path);
    fuzz::expect_no_throw("checking an accepted file", [&] {
      fuzz::check(r.version() == 3, "version is not 3");
      fuzz::check(r.alignment() != 0 && (r.alignment() & (r.alignment() - 1)) == 0,
                  "alignment is not a power of two");
      for (const std::string& key : r.keys()) {
        fuzz::check(r.has(key), "keys() lists '" + fuzz::quote(key) + "' but has() says no");
        check_getters(r, key);
      }
      const std::string absent = "\x01 not a key";
      fuzz::check(!fuzz::expect_clean({path}, [&] { (void)r.value(absent); }),
                  "value() of a key the file lacks did not throw");
      const auto bytes = check_tensors(r, size);
      round_trip(r, bytes);
    });
  });
  return 0;
}
