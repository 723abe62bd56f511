// Shared by the fuzz harnesses (tests/fuzz/README.md): a scratch folder per process,
// writing the input there as a file, and the contract every reader is held to.
//
// The contract: a reader either succeeds or throws an exception derived from
// std::exception whose what() is non-empty and names the file (or source) it was given.
// Anything else is a finding, reported by printing "FUZZ FINDING: ..." and aborting,
// which libFuzzer (and CTest, through the replay main) treats as a crash:
//  - std::bad_alloc or std::length_error: a small input made the reader allocate absurdly;
//  - an error that does not name the file, or has an empty message;
//  - an exception of a type not derived from std::exception;
//  - a broken promise of the API (a round trip that does not give back what went in).
#pragma once

#include <cxxabi.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>
#include <vector>

#include "whtlm/threads.hpp"

namespace whtlm::fuzz {

// Longest excerpt of an input or a message quoted in a finding.
inline constexpr std::size_t kQuote = 400;

inline std::string quote(std::string_view s) {
  return std::string(s.substr(0, kQuote)) + (s.size() > kQuote ? "..." : "");
}

inline std::string type_name(const std::type_info& t) {
  int status = 0;
  char* name = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name != nullptr ? name : t.name();
  std::free(name);
  return out;
}

inline std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  return t != nullptr ? type_name(*t) : "unknown";
}

// This process's scratch folder, made on first use: /dev/shm/whtlm-fuzz-PID-XXXXXX where
// /dev/shm exists, else in $TMPDIR or /tmp; removed at exit and by fail(), left behind
// by a sanitizer's crash (scripts/fuzz removes those). Never in the repo.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::error_code ec;
    std::string base = "/tmp";
    if (std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0)
      base = "/dev/shm";
    else if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0')
      base = t;
    // The pid in the name lets scripts/fuzz remove the folders of processes that crashed.
    std::string tmpl = base + "/whtlm-fuzz-" + std::to_string(::getpid()) + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror(("whtlm fuzz: mkdtemp " + tmpl).c_str());
      std::abort();
    }
    return tmpl;
  }();
  static const bool cleanup_registered = [] {
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return true;
  }();
  (void)cleanup_registered;
  return dir;
}

// A finding: prints it and aborts (libFuzzer then saves the input as an artifact).
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\nFUZZ FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::error_code ec;
  std::filesystem::remove_all(scratch_dir(), ec);
  std::abort();
}

inline void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

// One-time setup for every harness: one thread (the readers need no pool).
inline void init_once() {
  static const bool done = [] {
    set_num_threads(1);
    return true;
  }();
  (void)done;
}

// Writes `size` bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_input(const std::string& name, const void* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) fail("cannot write the input to " + path);
  return path;
}

inline std::string write_input(const std::string& name, std::string_view bytes) {
  return write_input(name, bytes.data(), bytes.size());
}

// train_state.json of a finished tiny llama run (1 layer, d 32, wht; a 2-step run of
// scripts/fuzz-seeds with its step counts set to `steps`), for the harnesses that fuzz
// another file of a run folder.
inline std::string tiny_train_state(int steps) {
  const std::string n = std::to_string(steps);
  return R"({
  "checkpoint": "checkpoints/step-)" +
         n + R"(",
  "elapsed_s": 0.061113797,
  "flops": 14364672.0,
  "options": {
    "accum": 1, "batch": 2, "beta1": 0.8999999761581421, "beta2": 0.949999988079071,
    "clip": 1.0,
    "config": {
      "architectures": ["LlamaForCausalLM"], "attention_bias": false,
      "attn_output_projection": "wht", "head_dim": 16, "hidden_act": "silu",
      "hidden_size": 32, "intermediate_size": 256, "max_position_embeddings": 256,
      "mlp_bias": false, "model_type": "llama", "num_attention_heads": 2,
      "num_hidden_layers": 1, "num_key_value_heads": 2, "rms_norm_eps": 9.999999747378752e-06,
      "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32",
      "vocab_size": 256
    },
    "data": {"chunk_tokens": 1024, "path": "small.txt", "tokenizer": "byte",
             "val_fraction": 0.05, "val_path": ""},
    "device": "cpu", "eps": 9.99999993922529e-09, "eval_batches": 1, "eval_every": 1,
    "flops": 0.0, "lr": 0.001, "min_lr_ratio": 0.1, "precision": "fp32", "preset": "tiny",
    "save_every": 0, "seed": 1, "seq": 16, "steps": )" +
         n + R"(, "threads": 1, "tokens": 0,
    "warmup": -1, "weight_decay": 0.10000000149011612
  },
  "step": )" +
         n + R"(,
  "threads": 1,
  "tokens": )" +
         std::to_string(64 * steps) + R"(.0
}
)";
}

// scratch_dir()/run, a run folder holding tiny_train_state(steps); its path.
inline std::string tiny_run_folder(int steps) {
  const std::string d = scratch_dir() + "/run";
  std::filesystem::create_directories(d);
  write_input("run/train_state.json", tiny_train_state(steps));
  return d;
}

// Runs `read` (a reader call on input that may be anything) under the contract above.
// Returns true when it returned, false when it rejected the input properly. Every
// string in `must_name` that is non-empty is accepted as the name the error must hold
// (any one of them: e.g. either of two files).
template <class F>
bool expect_clean(const std::vector<std::string>& must_name, F&& read) {
  try {
    read();
    return true;
  } catch (const std::bad_alloc& e) {
    fail("std::bad_alloc (" + std::string(e.what()) +
         "): a small input made the reader allocate absurdly");
  } catch (const std::length_error& e) {
    fail("std::length_error (" + std::string(e.what()) +
         "): a small input made the reader ask for an absurd size");
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    if (msg.empty()) fail(type_name(typeid(e)) + " with an empty what()");
    bool named = false;
    for (const std::string& n : must_name) named = named || (!n.empty() && msg.find(n) != msg.npos);
    if (!named) {
      std::string names;
      for (const std::string& n : must_name) names += (names.empty() ? "" : " or ") + n;
      fail("the error does not name " + names + ": " + type_name(typeid(e)) + ": " + quote(msg));
    }
    return false;
  } catch (...) {
    fail("an exception not derived from std::exception: " + current_exception_type());
  }
}

// Runs `f`, which must not throw at all (a step after the reader accepted the input,
// e.g. writing it back out and reading that again); `what` says which step.
template <class F>
void expect_no_throw(const std::string& what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    fail(what + " threw " + type_name(typeid(e)) + ": " + quote(e.what()));
  } catch (...) {
    fail(what + " threw " + current_exception_type());
  }
}

}  // namespace whtlm::fuzz
