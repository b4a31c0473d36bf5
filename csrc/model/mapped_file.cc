#include "model/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace nemo {

static std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r may return a static string instead of filling buf; use whichever it returns.
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  return std::string(strerror_r(err, buf, sizeof(buf)));
#else
  if (strerror_r(err, buf, sizeof(buf)) != 0) return "error " + std::to_string(err);
  return std::string(buf);
#endif
}

Status MappedFile::open(const std::string& path, std::shared_ptr<MappedFile>* out) {
  if (out == nullptr) return Status(StatusCode::kInternal, "MappedFile::open: out is null");
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status(StatusCode::kNotFound, "file not found: " + path);
    return Status(StatusCode::kNotFound, "cannot open " + path + ": " + errno_text(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status(StatusCode::kNotFound, "cannot stat " + path + ": " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(StatusCode::kNotFound,
                  path + (S_ISDIR(st.st_mode) ? " is a folder, not a file" : " is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status(StatusCode::kOutOfMemory, "cannot memory-map " + path + " (" + std::to_string(size) +
                                                  " bytes): " + errno_text(err));
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  MappedFile* mf = new (std::nothrow) MappedFile(path, data, size);
  if (mf == nullptr) {
    if (data != nullptr) ::munmap(const_cast<uint8_t*>(data), size);
    return Status(StatusCode::kOutOfMemory, "out of memory mapping " + path);
  }
  out->reset(mf);
  return Status::Ok();
}

Status MappedFile::anonymous(const std::string& label, size_t bytes, std::shared_ptr<MappedFile>* out) {
  if (out == nullptr) return Status(StatusCode::kInternal, "MappedFile::anonymous: out is null");
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
  uint8_t* base = nullptr;
  size_t map_size = 0;
  uint8_t* data = nullptr;
  if (size > 0) {
    // Over-allocate by one huge page and trim, so that the region starts on a 2 MiB boundary.
    map_size = size + kHuge;
    void* p = ::mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      return Status(StatusCode::kOutOfMemory, "cannot allocate " + std::to_string(size) + " bytes for a copy of " +
                                                  label + ": " + errno_text(err));
    }
    base = static_cast<uint8_t*>(p);
    const uintptr_t a = reinterpret_cast<uintptr_t>(base);
    data = reinterpret_cast<uint8_t*>((a + kHuge - 1) / kHuge * kHuge);
    const size_t head = static_cast<size_t>(data - base), tail = map_size - head - size;
    if (head > 0) ::munmap(base, head);
    if (tail > 0) ::munmap(data + size, tail);
    base = data;
    map_size = size;
#if defined(MADV_HUGEPAGE)
    ::madvise(data, size, MADV_HUGEPAGE);  // best effort: EINVAL where THP is compiled out
#endif
  }
  MappedFile* mf = new (std::nothrow) MappedFile(label, data, bytes);
  if (mf == nullptr) {
    if (base != nullptr) ::munmap(base, map_size);
    return Status(StatusCode::kOutOfMemory, "out of memory copying " + label);
  }
  mf->anonymous_ = true;
  mf->map_base_ = base;
  mf->map_size_ = map_size;
  out->reset(mf);
  return Status::Ok();
}

void MappedFile::seal() const {
  if (anonymous_ && map_base_ != nullptr) ::mprotect(const_cast<uint8_t*>(map_base_), map_size_, PROT_READ);
}

void MappedFile::advise_file(size_t offset, size_t bytes) const {
  if (anonymous_ || data_ == nullptr || offset >= size_) return;
  bytes = std::min(bytes, size_ - offset);
  const uintptr_t page = 4096;
  const uintptr_t a = reinterpret_cast<uintptr_t>(data_ + offset) / page * page;
  const size_t n = static_cast<size_t>(reinterpret_cast<uintptr_t>(data_ + offset + bytes) - a);
  void* p = reinterpret_cast<void*>(a);
#if defined(MADV_HUGEPAGE)
  ::madvise(p, n, MADV_HUGEPAGE);  // EINVAL unless the kernel has THP for read-only file mappings
#endif
  ::madvise(p, n, MADV_WILLNEED);
}

MappedFile::~MappedFile() {
  if (map_base_ != nullptr) ::munmap(const_cast<uint8_t*>(map_base_), map_size_);
}

}  // namespace nemo
