// A small team of worker threads that stay alive across time steps and across calls.
//
// parallel(fn) runs fn(team) on num_threads() threads (the caller is rank 0) and returns when all
// are done. Inside, team.barrier() is a spinning barrier (one per time step in the kernels).
// Between calls the workers sleep on a condition variable: nothing spins after a call returns.
// A worker that wakes on a CPU another member of the call runs on moves off it (CpuClaims).
// Calls from several threads at once take turns (one team, a mutex).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace fusedrnn::cpu {

// The items [0, count) of one rank's share of a phase. The rank takes them in order from the front;
// a rank that has run out of its own takes the last ones left from the back. Which rank runs an
// item never changes what the item computes, so sharing keeps results bitwise the same.
class alignas(64) WorkRange {
 public:
  // Release and acquire: what the owner wrote before reset() is visible to whoever takes an item.
  void reset(long count) { bounds_.store(std::uint64_t(count) << 32, std::memory_order_release); }
  bool take_front(long* item) { return take(item, false); }
  bool take_back(long* item) { return take(item, true); }

 private:
  bool take(long* item, bool back) {
    std::uint64_t old = bounds_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t front = old & 0xffffffffu, end = old >> 32;
      if (front >= end) return false;
      const std::uint64_t next = back ? (end - 1) << 32 | front : end << 32 | (front + 1);
      if (bounds_.compare_exchange_weak(old, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
        *item = static_cast<long>(back ? end - 1 : front);
        return true;
      }
    }
  }
  std::atomic<std::uint64_t> bounds_{0};  // the next item from the front (low half), one past the last
};

class Team {
 public:
  virtual ~Team() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void barrier() = 0;
  // One WorkRange per rank in each of kWorkSlots slots (a phase uses one slot while the ranks
  // reset the next one's). Valid for the team's call.
  static constexpr int kWorkSlots = 2;
  virtual WorkRange& work_range(int slot, int rank) = 0;

  // [begin, end) of `count` items for rank r (default: this one): contiguous, balanced, fixed for
  // a given size.
  void split(long count, long* begin, long* end) const { split(rank(), count, begin, end); }
  void split(int r, long count, long* begin, long* end) const {
    const long per = count / size(), extra = count % size();
    *begin = r * per + (r < extra ? r : extra);
    *end = *begin + per + (r < extra ? 1 : 0);
  }

  // Runs run(owner, item) once for each item left in every rank's WorkRange of `slot`: this
  // rank's own from the front, then the others' from the back. Then gives this rank `next_count`
  // items in the other slot, for the next phase (no rank touches that slot until the barrier that
  // ends this one). The last phase of a call passes 0, so that every range is empty between
  // phases that do not follow one another: a rank may then look into another's range before its
  // owner has set it, and find nothing to take rather than items of another phase.
  template <class Run>
  void share(int slot, long next_count, Run&& run) {
    long item;
    while (work_range(slot, rank()).take_front(&item)) run(rank(), item);
    for (int k = 1; k < size(); ++k) {
      const int other = (rank() + k) % size();
      while (work_range(slot, other).take_back(&item)) run(other, item);
    }
    work_range(1 - slot, rank()).reset(next_count);
  }
};

// Runs fn on the whole team, or on the calling thread alone when the call is too small for waking
// the workers to pay off: work_flops (its multiply-adds x 2, plus 4 per weight element it packs)
// below kTeamMinFlops. Measured on 2 cores (perf-notes, eighth session): one thread is 1.1-1.9x
// faster on every shape measured up to 2.1 MFLOP; from 3 MFLOP on, which wins depends on the shape.
constexpr double kTeamMinFlops = 2.5e6;
void parallel(const std::function<void(Team&)>& fn, double work_flops);

int num_threads();
void set_num_threads(int n);  // n >= 1
int default_num_threads();    // the CPUs this process may run on

}  // namespace fusedrnn::cpu
