// How fast this machine streams memory into the cores: the ceiling for decode, which reads every
// weight once per token. Measured, not looked up, so benchmarks can state "x % of the limit" for the
// machine they ran on.
#pragma once
#include <cstddef>

namespace nemo {

class ThreadPool;

// Best of `reps` passes reading `bytes` (rounded down to 256) of a private buffer with wide vector loads
// on every thread of `pool`, in 1e9 bytes per second. The buffer is written once before timing, so its
// pages are resident; it should be much larger than the last-level cache (256 MiB is typical).
double measure_read_bandwidth(size_t bytes, int reps, ThreadPool& pool);

}  // namespace nemo
