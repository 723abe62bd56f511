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
