// Memory for the NumPy arrays fusedrnn.functional returns (outputs, tapes, gradients) and its
// workspaces, kept for reuse once an array is freed.
//
// Why: a training call allocates ~4-6 arrays the size of its activations and frees them a call
// later. glibc maps such sizes afresh, or trims them back to the system, whenever the process holds
// other large blocks (any real program), so every call page-faults and clears all of them: on the
// 2-vCPU VM, ~15% of an LSTM H=256 B=16 T=100 forward + backward and 85% of an LSTM T=1 H=256 one
// (docs/perf-notes.md, ninth session). Here a freed block waits, uninitialised, for the next request
// of about its size.
//
// Blocks are rounded to 4 KB, and from 2 MB up aligned to 2 MB and asked for in huge pages (as
// NumPy does from 4 MB). A request takes the smallest idle block of its rounded size up to a
// quarter more; idle blocks beyond kMaxIdleBytes are freed, oldest first. Thread-safe.
#pragma once

#include <cstddef>

namespace fusedrnn::pool {

constexpr std::size_t kMaxIdleBytes = std::size_t{256} << 20;

struct Block {
  void* data;
  std::size_t capacity;  // bytes, what release() needs back
};

Block acquire(std::size_t bytes);  // throws std::bad_alloc
void release(Block block);
std::size_t idle_bytes();
void release_idle();  // frees every idle block

}  // namespace fusedrnn::pool
