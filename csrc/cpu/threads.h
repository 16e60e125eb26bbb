// A small team of worker threads that stay alive across time steps and across calls.
//
// parallel(fn) runs fn(team) on num_threads() threads (the caller is rank 0) and returns when all
// are done. Inside, team.barrier() is a spinning barrier (one per time step in the kernels).
// Between calls the workers sleep on a condition variable: nothing spins after a call returns.
// Calls from several threads at once take turns (one team, a mutex).
#pragma once

#include <functional>

namespace fusedrnn::cpu {

class Team {
 public:
  virtual ~Team() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void barrier() = 0;

  // [begin, end) of `count` items for this rank: contiguous, balanced, fixed for a given size.
  void split(long count, long* begin, long* end) const {
    const long per = count / size(), extra = count % size(), r = rank();
    *begin = r * per + (r < extra ? r : extra);
    *end = *begin + per + (r < extra ? 1 : 0);
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
