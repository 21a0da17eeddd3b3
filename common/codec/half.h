#ifndef FEDGE_COMMON_HALF_H_
#define FEDGE_COMMON_HALF_H_

// IEEE 754 binary16 conversions, round to nearest even, with subnormals,
// infinities and NaN. Plain functions; thread-safe.

#include <cstdint>

namespace fedge {

uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t half);

}  // namespace fedge

#endif  // FEDGE_COMMON_HALF_H_
