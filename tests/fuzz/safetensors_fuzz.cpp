// Fuzzes the safetensors reader (io::SafetensorsReader) and load_weights: the input is a
// whole .safetensors file. Accepted files must keep the reader's promises: every tensor's
// bytes can be read (read_bytes, whatever the dtype), numel * dtype size == nbytes, F32
// and I32 tensors read back at their own shape; then the file is loaded into two small fixed
// layouts (a 1-layer d 8 llama with the dense projection, a 1-layer d 8 gpt2 with wht),
// which `whtlm init` writes for the seeds (scripts/fuzz-seeds).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/io.hpp"
#include "whtlm/model.hpp"

namespace {

using namespace whtlm;

ModelConfig small_config(const char* preset_name, Projection proj) {
  ModelConfig c = preset(preset_name);
  c.n_layer = 1;
  c.d_model = 8;
  c.n_head = c.n_kv_head = 2;
  c.vocab_size = 16;
  c.projection = proj;
  return c;
}

void read_everything(const io::SafetensorsReader& file) {
  std::size_t meta_bytes = 0;
  for (const auto& [k, v] : file.metadata()) meta_bytes += k.size() + v.size();
  (void)meta_bytes;
  for (const std::string& name : file.names()) {
    fuzz::check(file.contains(name),
                "names() lists '" + fuzz::quote(name) + "' but contains() says no");
    const io::TensorInfo& t = file.info(name);
    const std::size_t elem = io::dtype_size(t.dtype);
    fuzz::check(t.numel() * elem == t.nbytes,
                "tensor '" + fuzz::quote(name) + "': numel " + std::to_string(t.numel()) + " x " +
                    std::to_string(elem) + " bytes != nbytes " + std::to_string(t.nbytes));
    // Every tensor's bytes, whatever the dtype.
    std::vector<unsigned char> raw(t.nbytes);
    file.read_bytes(name, raw.data());
    std::vector<unsigned char> typed(t.nbytes);
    if (t.dtype == io::DType::f32)
      file.read_f32(name, t.shape, reinterpret_cast<float*>(typed.data()));
    else if (t.dtype == io::DType::i32)
      file.read_i32(name, t.shape, reinterpret_cast<std::int32_t*>(typed.data()));
    else
      continue;
    fuzz::check(typed == raw,
                "tensor '" + fuzz::quote(name) + "': read_f32/read_i32 and read_bytes differ");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::init_once();
  static const ParamLayout llama(small_config("tiny", Projection::dense));
  static const ParamLayout gpt2(small_config("tiny-gpt2", Projection::wht));
  static std::vector<float> params(std::max(llama.total_floats(), gpt2.total_floats()));

  const std::string path = fuzz::write_input("model.safetensors", data, size);
  const bool opened = fuzz::expect_clean({path}, [&] {
    const io::SafetensorsReader file(path);
    fuzz::expect_no_throw("reading the tensors of an accepted file",
                          [&] { read_everything(file); });
    // A name it lacks is an error naming the file.
    const std::string absent = "\x01 not a tensor";
    if (!file.contains(absent))
      fuzz::check(!fuzz::expect_clean({path}, [&] { (void)file.info(absent); }),
                  "info() of a name the file lacks did not throw");
  });
  if (!opened) return 0;
  for (const ParamLayout* layout : {&llama, &gpt2})
    fuzz::expect_clean({path}, [&] { load_weights(path, *layout, params.data()); });
  return 0;
}
