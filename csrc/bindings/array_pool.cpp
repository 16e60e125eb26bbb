#include "array_pool.h"

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fusedrnn::pool {
namespace {

constexpr std::size_t kPage = std::size_t{4} << 10, kHugePage = std::size_t{2} << 20;

std::size_t rounded(std::size_t bytes) {
  const std::size_t unit = bytes >= kHugePage ? kHugePage : kPage;
  return (bytes + unit - 1) / unit * unit;
}

struct Idle {
  Block block;
  std::uint64_t freed;  // order of release: the oldest is freed first
};

struct Pool {
  std::mutex mutex;
  std::vector<Idle> idle;
  std::size_t idle_bytes = 0;
  std::uint64_t releases = 0;
};

Pool& the_pool() {
  static Pool* pool = new Pool;  // never destroyed: arrays may be freed during interpreter exit
  return *pool;
}

}  // namespace

Block acquire(std::size_t bytes) {
  const std::size_t size = rounded(bytes);
  Pool& p = the_pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    auto best = p.idle.end();
    for (auto it = p.idle.begin(); it != p.idle.end(); ++it)
      if (it->block.capacity >= size && it->block.capacity - size <= size / 4 &&
          (best == p.idle.end() || it->block.capacity < best->block.capacity))
        best = it;
    if (best != p.idle.end()) {
      const Block block = best->block;
      p.idle_bytes -= block.capacity;
      p.idle.erase(best);
      return block;
    }
  }
  const std::size_t align = size >= kHugePage ? kHugePage : 64;
  void* data = std::aligned_alloc(align, size);
  if (!data) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHugePage) madvise(data, size, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return {data, size};
}

void release(Block block) {
  if (block.capacity > kMaxIdleBytes) return std::free(block.data);
  std::vector<void*> freed;
  {
    Pool& p = the_pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    p.idle.push_back({block, p.releases++});
    p.idle_bytes += block.capacity;
    while (p.idle_bytes > kMaxIdleBytes) {
      auto oldest = p.idle.begin();
      for (auto it = p.idle.begin(); it != p.idle.end(); ++it)
        if (it->freed < oldest->freed) oldest = it;
      freed.push_back(oldest->block.data);
      p.idle_bytes -= oldest->block.capacity;
      p.idle.erase(oldest);
    }
  }
  for (void* data : freed) std::free(data);
}

std::size_t idle_bytes() {
  Pool& p = the_pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.idle_bytes;
}

void release_idle() {
  std::vector<Idle> idle;
  {
    Pool& p = the_pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    idle.swap(p.idle);
    p.idle_bytes = 0;
  }
  for (const Idle& i : idle) std::free(i.block.data);
}

}  // namespace fusedrnn::pool
