// How fast this machine streams memory into the cores: the ceiling for decode, which reads every
// weight once per token. Measured, not looked up, so benchmarks can state "x % of the limit" for the
// machine they ran on.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace nemo {

class ThreadPool;

// Best of `reps` passes reading `bytes` (rounded down to 256) of a private buffer with wide vector loads
// on every thread of `pool`, in 1e9 bytes per second. The buffer is written once before timing, so its
// pages are resident; it should be much larger than the last-level cache (256 MiB is typical).
double measure_read_bandwidth(size_t bytes, int reps, ThreadPool& pool);

// Best of `reps` passes reading the given byte ranges where they are (weights as placed: a file
// mapping or a copy), every range split evenly over the threads of `pool` as a decode step splits a
// matrix's rows, the ranges one after the other; in 1e9 bytes per second. The first pass also faults
// in whatever is not mapped yet.
double measure_read_bandwidth_of(const std::vector<std::pair<const uint8_t*, size_t>>& ranges, int reps,
                                 ThreadPool& pool);

}  // namespace nemo
