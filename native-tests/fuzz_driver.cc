// A seeded mutation fuzzer for the parser targets of fuzz_targets.h, so CI fuzzes without clang/libFuzzer:
// the same seed gives the same cases on every machine. Each case is a seed input (the files of the corpus
// folders: valid examples and the regression inputs of earlier crashes) with 1 to 4 mutations stacked:
// bit flips, interesting bytes and little-endian integers (0, -1, 2^31, 2^63, the input's size...),
// deletions, duplications, truncation, splices from another seed, and for text, numbers replaced by
// boundary values (-1, 1e308, 2^63, NaN, Infinity...). Mutations favour the first 8 KiB, where the headers
// are. The input of a case that crashes (a signal, a sanitizer report, or 10 s without returning) is written
// to --crash-dir before the process dies: add it to the corpus folder to keep it as a regression input.
//
//   fuzz_driver --target gguf --corpus test/fixtures/fuzz/gguf [--corpus more/] [--seed 1] [--cases 1000]
//               [--seconds 0] [--crash-dir /tmp]
// Exit status 0 when every case returned.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"

extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

// ---- the case being run, for the crash handlers (async-signal-safe: fixed buffers, write(2)) --------
const uint8_t* g_data = nullptr;
size_t g_size = 0;
char g_crash_path[4096] = {0};
volatile sig_atomic_t g_saved = 0;

void save_current() {
  if (g_saved || g_crash_path[0] == 0) return;
  g_saved = 1;
  const int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    size_t off = 0;
    while (off < g_size) {
      const ssize_t n = ::write(fd, g_data + off, g_size - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  const char msg[] = "\nfuzz: CRASH: the input was written to ";
  (void)!::write(2, msg, sizeof(msg) - 1);
  (void)!::write(2, g_crash_path, std::strlen(g_crash_path));
  (void)!::write(2, "\n", 1);
}

void on_signal(int sig) {
  if (sig == SIGALRM) {
    const char msg[] = "\nfuzz: HANG: a case ran for more than 10 s\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
  }
  save_current();
  ::signal(sig, SIG_DFL);
  ::raise(sig == SIGALRM ? SIGABRT : sig);
}

// ---- deterministic randomness ------------------------------------------------------------------
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) { next(); }
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// A position, favouring the headers at the start of the input.
size_t pick_pos(Rng& r, size_t size) {
  if (size == 0) return 0;
  return r.below(2) ? r.below(std::min<size_t>(size, 8192)) : r.below(size);
}

const uint8_t kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '"', '[', ']', '{', '}', ',', ':', '-', '9', 'e', '\\', 0x20};
const uint64_t kInts[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffffull, 0x80000000ull,
                          0xffffffffull, 0x100000000ull, (1ull << 53) + 1, 0x7fffffffffffffffull,
                          0x8000000000000000ull, ~0ull};
const char* const kNumbers[] = {"-1", "0", "1", "1e308", "-1e308", "NaN", "Infinity", "-Infinity", "1.5",
                                "2147483648", "4294967296", "9007199254740993", "9223372036854775808",
                                "18446744073709551616", "100000000", "257", "1e-320", "-0"};

void mutate(Rng& r, std::vector<uint8_t>& d, const std::vector<std::vector<uint8_t>>& seeds) {
  switch (r.below(9)) {
    case 0:  // flip a bit
      if (!d.empty()) d[pick_pos(r, d.size())] ^= static_cast<uint8_t>(1u << r.below(8));
      break;
    case 1:  // an interesting byte
      if (!d.empty()) d[pick_pos(r, d.size())] = kBytes[r.below(sizeof(kBytes))];
      break;
    case 2: {  // an interesting little-endian integer (4 or 8 bytes), or the input's size +-1
      const size_t w = r.below(2) ? 4 : 8;
      if (d.size() < w) break;
      uint64_t v = r.below(4) == 0 ? d.size() + r.below(3) - 1 : kInts[r.below(std::size(kInts))];
      const size_t at = std::min(pick_pos(r, d.size()), d.size() - w);
      for (size_t i = 0; i < w; ++i) d[at + i] = static_cast<uint8_t>(v >> (8 * i));
      break;
    }
    case 3: {  // delete a range
      if (d.empty()) break;
      const size_t at = pick_pos(r, d.size());
      const size_t n = std::min(d.size() - at, 1 + r.below(r.below(2) ? 8 : 256));
      d.erase(d.begin() + at, d.begin() + at + n);
      break;
    }
    case 4: {  // duplicate a range in place
      if (d.empty() || d.size() > (1u << 24)) break;
      const size_t at = pick_pos(r, d.size());
      const size_t n = std::min(d.size() - at, 1 + r.below(64));
      std::vector<uint8_t> piece(d.begin() + at, d.begin() + at + n);
      d.insert(d.begin() + pick_pos(r, d.size()), piece.begin(), piece.end());
      break;
    }
    case 5:  // truncate
      d.resize(pick_pos(r, d.size() + 1));
      break;
    case 6: {  // splice a range of another seed over this one
      const std::vector<uint8_t>& o = seeds[r.below(seeds.size())];
      if (o.empty() || d.empty()) break;
      const size_t from = pick_pos(r, o.size());
      const size_t n = std::min({o.size() - from, d.size(), 1 + r.below(128)});
      const size_t at = std::min(pick_pos(r, d.size()), d.size() - n);
      std::copy(o.begin() + from, o.begin() + from + n, d.begin() + at);
      break;
    }
    default: {  // text: replace a number with a boundary value
      if (d.empty()) break;
      size_t at = pick_pos(r, d.size());
      while (at < d.size() && !(d[at] >= '0' && d[at] <= '9')) ++at;
      if (at == d.size()) break;
      size_t end = at;
      while (end < d.size() && ((d[end] >= '0' && d[end] <= '9') || d[end] == '.' || d[end] == 'e' || d[end] == '-'))
        ++end;
      if (at > 0 && d[at - 1] == '-') --at;
      const char* num = kNumbers[r.below(std::size(kNumbers))];
      d.erase(d.begin() + at, d.begin() + end);
      d.insert(d.begin() + at, num, num + std::strlen(num));
      break;
    }
  }
}

bool read_file(const std::string& path, std::vector<uint8_t>* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

int usage() {
  std::fprintf(stderr,
               "usage: fuzz_driver --target safetensors|gguf|config --corpus DIR [--corpus DIR] [--seed N] "
               "[--cases N] [--seconds S] [--crash-dir DIR]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string target, crash_dir = ".";
  std::vector<std::string> corpus_dirs;
  uint64_t seed = 1;
  long cases = 1000;
  double seconds = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--target") target = v;
    else if (a == "--corpus") corpus_dirs.push_back(v);
    else if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
    else if (a == "--cases") cases = std::strtol(v, nullptr, 10);
    else if (a == "--seconds") seconds = std::strtod(v, nullptr);
    else if (a == "--crash-dir") crash_dir = v;
    else return usage();
  }
  if (target.empty() || corpus_dirs.empty()) return usage();

  // Seeds: every regular file of the corpus folders, by name (the order fixes the cases).
  std::vector<std::string> paths;
  for (const std::string& dir : corpus_dirs) {
    DIR* dp = ::opendir(dir.c_str());
    if (dp == nullptr) {
      std::fprintf(stderr, "fuzz: cannot open corpus folder %s\n", dir.c_str());
      return 2;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dp)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    ::closedir(dp);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) paths.push_back(dir + "/" + n);
  }
  std::vector<std::vector<uint8_t>> seeds;
  for (const std::string& p : paths) {
    std::vector<uint8_t> d;
    if (read_file(p, &d)) seeds.push_back(std::move(d));
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "fuzz: no seed inputs in the corpus folders\n");
    return 2;
  }

  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(save_current);
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGALRM}) ::signal(sig, on_signal);

  auto run = [&](const std::vector<uint8_t>& d) {
    g_data = d.data();
    g_size = d.size();
    std::snprintf(g_crash_path, sizeof(g_crash_path), "%s/crash-%s-%016llx", crash_dir.c_str(), target.c_str(),
                  static_cast<unsigned long long>(fnv1a(d.data(), d.size())));
    ::alarm(10);
    const bool known = nemo::fuzz::run_target(target.c_str(), d.data(), d.size());
    ::alarm(0);
    return known;
  };

  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& s : seeds) {
    if (!run(s)) {
      std::fprintf(stderr, "fuzz: unknown target '%s'\n", target.c_str());
      return 2;
    }
  }
  Rng rng(seed ^ fnv1a(reinterpret_cast<const uint8_t*>(target.data()), target.size()));
  long done = 0;
  std::vector<uint8_t> d;
  for (; cases <= 0 || done < cases; ++done) {
    if (seconds > 0 && (done & 63) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds)
      break;
    d = seeds[rng.below(seeds.size())];
    const size_t n = 1 + rng.below(4);
    for (size_t k = 0; k < n; ++k) mutate(rng, d, seeds);
    run(d);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fuzz: %-11s %zu seed inputs + %ld mutated cases (seed %llu) in %.1f s: no crash\n", target.c_str(),
              seeds.size(), done, static_cast<unsigned long long>(seed), secs);
  return 0;
}
