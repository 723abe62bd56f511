// Text corpora: the byte tokenizer, loading a data path (text or llm.c shards, a file or a
// folder) into one token stream, and the built-in King James Bible corpus.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "whtlm/data.hpp"
#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::data {
namespace {

namespace fs = std::filesystem;

std::string errno_text() { return std::strerror(errno); }

// The whole file as bytes (a regular file only: io::read_file refuses FIFOs and devices).
std::string read_whole_file(const fs::path& path) {
  return io::read_file(path.string(), io::kNoLimit);
}

// Text read whole is held as bytes, then as 4-byte ids, then split into train and
// validation copies: about 9 bytes of memory per byte of text. Checked before reading,
// so a corpus too large for memory is refused with a pointer to the streamed path.
void check_text_fits(const std::vector<fs::path>& files, const std::string& what) {
  double bytes = 0;
  std::error_code ec;
  for (const fs::path& f : files) bytes += double(fs::file_size(f, ec));
  const double need = 9.0 * bytes, room = double(io::host_memory_available());
  if (need > room)
    throw std::runtime_error(what + ": " + std::to_string(static_cast<long long>(bytes)) +
                             " bytes of text need about " +
                             std::to_string(static_cast<long long>(need / 1048576)) +
                             " MiB of memory as tokens, more than the " +
                             std::to_string(static_cast<long long>(room / 1048576)) +
                             " MiB available; tokenize it once with `whtlm data prepare`, whose "
                             "shards training streams from disk");
}

void check_vocab(std::span<const std::int32_t> tokens, int vocab_size, const std::string& file) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      throw std::runtime_error(file + ": token id " + std::to_string(tokens[i]) + " at position " +
                               std::to_string(i) + " is outside the vocabulary (vocab_size " +
                               std::to_string(vocab_size) + "; set --vocab)");
    }
  }
}

void check_text_vocab(int vocab_size, const std::string& file) {
  if (vocab_size < ByteTokenizer::kVocabSize) {
    throw std::invalid_argument(file +
                                ": text is tokenized as bytes, which needs a vocabulary "
                                "(--vocab) of at least " +
                                std::to_string(ByteTokenizer::kVocabSize) + ", not " +
                                std::to_string(vocab_size));
  }
}

void append_bytes(std::string_view text, std::vector<std::int32_t>& tokens) {
  tokens.reserve(tokens.size() + text.size());
  for (const char c : text) tokens.push_back(static_cast<unsigned char>(c));
}

// "data/books/" -> "books/", "data/kjv.txt" -> "kjv.txt".
std::string display_name(const fs::path& path, bool folder) {
  fs::path p = path;
  if (p.filename().empty()) p = p.parent_path();
  std::string name = p.filename().string();
  if (name.empty() || name == ".") name = path.string();
  return folder ? name + "/" : name;
}

// ---- The King James Bible ----

// ${XDG_CACHE_HOME:-$HOME/.cache}/whtlm. A relative XDG_CACHE_HOME is ignored, as the
// XDG base directory specification asks.
fs::path cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return fs::path(xdg) / "whtlm";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') return fs::path(home) / ".cache" / "whtlm";
  throw std::runtime_error(
      "cannot place the corpus cache: neither XDG_CACHE_HOME nor HOME is set (set one, or pass a "
      "corpus path)");
}

// The first executable called `name` on PATH, as the shell would find it.
std::optional<fs::path> find_on_path(const std::string& name) {
  const char* path_env = std::getenv("PATH");
  if (path_env == nullptr) return std::nullopt;
  std::string_view rest = path_env;
  while (true) {
    const std::size_t colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    const fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(colon + 1);
  }
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Runs the command and returns its standard output; throws unless it exits with 0.
std::string run_and_capture(const std::string& command, const std::string& what) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + what + ": " + errno_text());
  std::string out;
  char buf[1 << 16];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const bool read_error = std::ferror(pipe) != 0;
  const int status = ::pclose(pipe);
  if (status == -1) throw std::runtime_error("cannot wait for " + what + ": " + errno_text());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status)
                                ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                : "was killed by signal " + std::to_string(WTERMSIG(status));
    throw std::runtime_error(what + " failed: it " + how);
  }
  if (read_error) throw std::runtime_error("error reading the output of " + what);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// Splits an unformatted `bible -f` line, "<Book><chapter>:<verse> <text>" such as
// "Ge1:1 In the beginning ..." or "1Jo1:1 That which ...", into reference and text.
// The book is an optional digit then letters; returns nullopt when the line does not
// have that shape.
std::optional<std::pair<std::string_view, std::string_view>> split_reference(
    std::string_view line) {
  std::size_t i = 0;
  if (i < line.size() && is_digit(line[i])) ++i;
  const std::size_t book = i;
  while (i < line.size() && is_letter(line[i])) ++i;
  if (i == book) return std::nullopt;
  const std::size_t chapter = i;
  while (i < line.size() && is_digit(line[i])) ++i;
  if (i == chapter || i >= line.size() || line[i] != ':') return std::nullopt;
  const std::size_t verse = ++i;
  while (i < line.size() && is_digit(line[i])) ++i;
  if (i == verse || i >= line.size() || line[i] != ' ') return std::nullopt;
  return std::make_pair(line.substr(0, i), line.substr(i + 1));
}

// The plain text of the whole Bible, one verse per line.
//
// We run `bible -f`: -f turns off bible's default pretty-printing, so there are no
// book/chapter heading lines, no verse-number indentation and no line wrapping, and every
// verse is printed on one line as "<reference> <text>" (e.g. "Ge1:1 In the beginning God
// created ..."). With stdin from /dev/null and its output a pipe it neither pages nor
// waits for interactive input. The stripping rule: drop the reference and the single
// space after it, keep the verse text, remove trailing whitespace; blank lines are
// skipped, and any other line is an error (bible's output is not what we expect). The
// result is the verses in canonical order, each ending in "\n", with no headings.
std::string kjv_text() {
  const std::optional<fs::path> bible = find_on_path("bible");
  if (!bible) {
    throw std::runtime_error(
        "the built-in corpus needs the `bible` program from Debian's bible-kjv package, which "
        "is not installed (not found on PATH): run scripts/install-deps (or `apt-get install "
        "bible-kjv`), or pass a corpus path");
  }
  const std::string raw =
      run_and_capture(shell_quote(bible->string()) + " -f 'gen1:1-rev22:21' </dev/null",
                      "`bible -f gen1:1-rev22:21`");

  std::string text;
  text.reserve(raw.size());
  std::size_t verses = 0, line_no = 0;
  std::string_view last_reference;
  std::string_view rest = raw;
  while (!rest.empty()) {
    const std::size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    ++line_no;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    if (line.empty()) continue;
    const auto parts = split_reference(line);
    if (!parts) {
      throw std::runtime_error(
          "unexpected output from `bible` at line " + std::to_string(line_no) +
          " (expected \"<Book><chapter>:<verse> <text>\"): " + std::string(line.substr(0, 80)));
    }
    last_reference = parts->first;
    text.append(parts->second);
    text.push_back('\n');
    ++verses;
  }
  // The KJV has 31,102 verses, from Genesis 1:1 to Revelation 22:21.
  constexpr std::string_view kFirst = "In the beginning God created the heaven and the earth.\n";
  if (verses < 31000 || text.compare(0, kFirst.size(), kFirst) != 0 ||
      last_reference != "Rev22:21") {
    throw std::runtime_error("unexpected output from `bible`: " + std::to_string(verses) +
                             " verses, last " + std::string(last_reference) +
                             " (expected 31102 verses from Genesis 1:1 to Revelation 22:21)");
  }
  return text;
}

// Writes `contents` to `path` atomically: a unique temp file in the same folder, flushed,
// then renamed over `path`. Readers see either no file or the whole file.
void write_file_atomically(const fs::path& path, std::string_view contents) {
  std::string tmp = path.string() + ".XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0)
    throw std::runtime_error(path.string() + ": cannot create a temp file: " + errno_text());
  auto give_up = [&](const std::string& what) {
    const std::string why = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error(tmp + ": " + what + ": " + why);
  };
  ::fchmod(fd, 0644);  // mkstemp makes it private; the cache is ordinary data
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      give_up("write error");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) give_up("cannot flush");
  if (::close(fd) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw std::runtime_error(tmp + ": close error: " + why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw std::runtime_error(path.string() + ": cannot rename " + tmp + " into place: " + why);
  }
}

}  // namespace

std::vector<std::int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> tokens;
  append_bytes(text, tokens);
  return tokens;
}

std::string ByteTokenizer::decode(std::span<const std::int32_t> tokens) const {
  std::string text(tokens.size(), '\0');
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= kVocabSize) {
      throw std::out_of_range("byte tokenizer: token id " + std::to_string(tokens[i]) +
                              " at position " + std::to_string(i) + " is not a byte (0..255)");
    }
    text[i] = static_cast<char>(static_cast<unsigned char>(tokens[i]));
  }
  return text;
}

std::string default_corpus_path() {
  const fs::path dir = cache_dir();
  const fs::path path = dir / "kjv.txt";
  std::error_code ec;
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) > 0 && !ec) return path.string();

  const std::string text = kjv_text();
  fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error(dir.string() + ": cannot create the cache folder: " + ec.message());
  write_file_atomically(path, text);
  return path.string();
}

namespace {

// Text tokenized by a tokenizer other than bytes, in parallel.
std::vector<std::int32_t> encode_text(const std::string& path, int vocab_size,
                                      const std::string& spec) {
  const tok::Tokenizer t = tok::load_tokenizer(spec);
  if (t.vocab_size() > vocab_size)
    throw std::runtime_error(spec + ": the tokenizer has " + std::to_string(t.vocab_size()) +
                             " tokens, more than the model's vocabulary of " +
                             std::to_string(vocab_size) + " (set --vocab)");
  return t.encode_parallel(tok::read_text(path));
}

}  // namespace

TokenStream read_token_stream(const std::string& path, int vocab_size,
                              const std::string& tokenizer) {
  if (path.empty()) throw std::invalid_argument("data path is empty");
  if (vocab_size < 1) {
    throw std::invalid_argument("vocab_size must be positive (got " + std::to_string(vocab_size) +
                                ")");
  }
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) {
    throw std::runtime_error("data path " + path + " does not exist" +
                             (ec && ec != std::errc::no_such_file_or_directory
                                  ? " (" + ec.message() + ")"
                                  : std::string()));
  }

  TokenStream stream;
  if (fs::is_regular_file(status)) {
    stream.name = display_name(path, false);
    if (looks_like_llmc_shard(path)) {
      stream.tokens = read_llmc_shard(path);
      check_vocab(stream.tokens, vocab_size, path);
    } else if (tokenizer != "byte") {
      check_text_fits({path}, path);
      stream.tokens = encode_text(path, vocab_size, tokenizer);
    } else {
      check_text_vocab(vocab_size, path);
      check_text_fits({path}, path);
      append_bytes(read_whole_file(path), stream.tokens);
      stream.bytes = true;
    }
    return stream;
  }
  if (!fs::is_directory(status)) {
    throw std::runtime_error("data path " + path + " is neither a regular file nor a folder");
  }

  // A folder: every regular file under it, in sorted path order.
  stream.name = display_name(path, true);
  std::vector<fs::path> files;
  for (const std::string& f : io::list_files(path)) files.emplace_back(f);
  stream.files = files.size();

  std::size_t shards = 0;
  const fs::path* a_shard = nullptr;
  const fs::path* a_text = nullptr;
  for (const fs::path& f : files) {
    if (looks_like_llmc_shard(f.string())) {
      ++shards;
      a_shard = &f;
    } else {
      a_text = &f;
    }
  }
  if (shards > 0 && shards < files.size()) {
    throw std::runtime_error(path + ": the folder mixes llm.c token shards (e.g. " +
                             a_shard->string() + ") with other files (e.g. " + a_text->string() +
                             "); use a folder of only .bin shards or only text");
  }

  if (shards > 0) {
    for (const fs::path& f : files) {
      const std::vector<std::int32_t> part = read_llmc_shard(f.string());
      check_vocab(part, vocab_size, f.string());
      stream.tokens.insert(stream.tokens.end(), part.begin(), part.end());
    }
  } else if (tokenizer != "byte") {
    check_text_fits(files, path);
    stream.tokens = encode_text(path, vocab_size, tokenizer);
  } else {
    check_text_vocab(vocab_size, path);
    check_text_fits(files, path);
    stream.bytes = true;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (i > 0) stream.tokens.push_back('\n');
      append_bytes(read_whole_file(files[i]), stream.tokens);
    }
  }
  return stream;
}

}  // namespace whtlm::data
