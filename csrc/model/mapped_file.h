// MappedFile: a whole file mapped read-only into memory (mmap), so weights are used where they are
// stored and paged in on demand. The mapping lives as long as the last shared_ptr to it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "core/status.h"

namespace nemo {

class MappedFile {
 public:
  // Maps `path` read-only. A missing or unreadable file gives kNotFound and a message naming the path;
  // a path that is not a regular file (a folder, a device) also gives kNotFound; a failed mmap gives
  // kOutOfMemory. An empty file maps fine: size() == 0 and data() == nullptr.
  static Status open(const std::string& path, std::shared_ptr<MappedFile>* out);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace nemo
