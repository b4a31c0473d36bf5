#include "model/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace nemo
