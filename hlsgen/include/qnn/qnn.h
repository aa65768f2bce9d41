// The qnn kernel library: one source for the Vitis (ap_*) and Catapult (ac_*) backends.
#ifndef QNN_QNN_H
#define QNN_QNN_H

#include "portability.h"
#include "dense.h"
#include "requant.h"
#include "softmax.h"
#include "io.h"

#endif
