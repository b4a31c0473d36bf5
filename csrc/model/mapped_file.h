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

  // Anonymous memory for a copy of `bytes` bytes (weights: 'memory'): a private read-write mapping
  // aligned to 2 MiB and advised MADV_HUGEPAGE, so that the kernel backs it with transparent huge pages
  // where it allows (the TLB then covers 2 MiB per entry instead of 4 KiB). `label` becomes path().
  // Pages are committed as they are written; fill it through writable_data(), then seal() it.
  static Status anonymous(const std::string& label, size_t bytes, std::shared_ptr<MappedFile>* out);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool is_anonymous() const { return anonymous_; }

  // Anonymous memory only (nullptr for a file mapping): the bytes to fill.
  uint8_t* writable_data() const { return anonymous_ ? const_cast<uint8_t*>(data_) : nullptr; }
  // Anonymous memory: makes it read-only once filled (best effort).
  void seal() const;
  // File mapping (weights: 'mmap'): asks for huge pages (honoured only where the kernel supports
  // transparent huge pages for read-only file mappings) and for read-ahead of [offset, offset + bytes).
  // Best effort: errors are ignored, nothing changes semantically.
  void advise_file(size_t offset, size_t bytes) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size), map_base_(data), map_size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool anonymous_ = false;
  const uint8_t* map_base_ = nullptr;  // what munmap gets (the anonymous mapping is over-allocated)
  size_t map_size_ = 0;
};

}  // namespace nemo
