// The one place that chooses the instruction set: the best this CPU runs among those built,
// unless FUSEDRNN_ISA names one (an unknown or unsupported name is an error at first use).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace fusedrnn::cpu {

namespace generic {
extern const KernelTable table;
}
#if defined(FUSEDRNN_HAVE_AVX2)
namespace avx2 {
extern const KernelTable table;
}
#endif
#if defined(FUSEDRNN_HAVE_AVX512)
namespace avx512 {
extern const KernelTable table;
}
#endif

namespace {

struct Candidate {
  const char* name;
  const KernelTable* table;
  bool (*supported)();
};

bool always() { return true; }
#if defined(FUSEDRNN_HAVE_AVX2)
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif
#if defined(FUSEDRNN_HAVE_AVX512)
bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}
#endif

// Best first.
const Candidate kCandidates[] = {
#if defined(FUSEDRNN_HAVE_AVX512)
    {"avx512", &avx512::table, has_avx512},
#endif
#if defined(FUSEDRNN_HAVE_AVX2)
    {"avx2", &avx2::table, has_avx2},
#endif
    {"generic", &generic::table, always},
};

const KernelTable& choose() {
  const char* forced = std::getenv("FUSEDRNN_ISA");
  if (forced && *forced) {
    for (const Candidate& c : kCandidates) {
      if (std::string(forced) != c.name) continue;
      if (!c.supported()) throw std::runtime_error(std::string("FUSEDRNN_ISA=") + forced + ": this CPU cannot run it");
      return *c.table;
    }
    throw std::runtime_error(std::string("FUSEDRNN_ISA=") + forced + ": not one of the ISAs built (" +
                             [] {
                               std::string s;
                               for (const auto& n : compiled_isas()) s += (s.empty() ? "" : ", ") + n;
                               return s;
                             }() + ")");
  }
  for (const Candidate& c : kCandidates)
    if (c.supported()) return *c.table;
  return generic::table;
}

}  // namespace

const KernelTable& kernels() {
  static const KernelTable& chosen = choose();
  return chosen;
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const Candidate& c : kCandidates) out.emplace_back(c.name);
  return out;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const Candidate& c : kCandidates)
    if (c.supported()) out.emplace_back(c.name);
  return out;
}

template <>
void forward<float>(CellKind cell, const ForwardParams<float>& p) {
  kernels().forward_f32(cell, p);
}
template <>
void forward<double>(CellKind cell, const ForwardParams<double>& p) {
  kernels().forward_f64(cell, p);
}
template <>
void backward<float>(CellKind cell, const BackwardParams<float>& p) {
  kernels().backward_f32(cell, p);
}
template <>
void backward<double>(CellKind cell, const BackwardParams<double>& p) {
  kernels().backward_f64(cell, p);
}

}  // namespace fusedrnn::cpu
