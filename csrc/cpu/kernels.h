// The CPU kernels' entry points. The cell kind picks a template instantiation here, once per
// call; nothing inside the time loop branches on it.
#pragma once

#include "fusedrnn/params.h"

namespace fusedrnn::cpu {

template <class S>
void forward(CellKind cell, const ForwardParams<S>& p);

template <class S>
void backward(CellKind cell, const BackwardParams<S>& p);

}  // namespace fusedrnn::cpu
