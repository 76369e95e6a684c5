/* kernels_instantiate.h: one (ISA, dtype) instance of every kernel template.
 * Included by kernels_impl.h once per dtype, after it sets the template
 * parameters; clears them afterwards.  No include guard: that is the point. */
#define BMF_KFN_(name, dtype, isa) name##_##dtype##_##isa
#define BMF_KFN(name, dtype, isa) BMF_KFN_(name, dtype, isa)
#define KFN(name) BMF_KFN(name, BMF_DTYPE, BMF_ISA_NAME)
#include "gemm_impl.h"
#include "rnn_impl.h"
#include "attention_impl.h"
#undef KFN
#undef BMF_KFN
#undef BMF_KFN_
#undef BMF_DTYPE
#undef REAL
#undef VEC
#undef VI
#undef VL
#undef V
