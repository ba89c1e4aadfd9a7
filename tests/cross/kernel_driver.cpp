// Reads (header, parameters, x) from argv[1], runs fxbn::apply on one thread, writes (result, y) to argv[2].
#include <cstdint>
#include <cstdio>
#include <vector>

#include "fxbn/kernel.hpp"

static const int kSize[] = {1, 1, 2, 2, 4};

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  std::FILE* f = std::fopen(argv[1], "rb");
  if (!f) return 3;
  int64_t h[8];  // in_type, out_type, outer, channels, inner, acc32, qmin, qmax
  if (std::fread(h, sizeof h, 1, f) != 1) return 4;
  const int64_t C = h[3], n = h[2] * h[3] * h[4];
  std::vector<int64_t> A(C), B(C), lo(C), hi(C);
  std::vector<int32_t> s(C);
  for (auto* v : {&A, &B, &lo, &hi})
    if (std::fread(v->data(), sizeof(int64_t), C, f) != static_cast<size_t>(C)) return 5;
  if (std::fread(s.data(), sizeof(int32_t), C, f) != static_cast<size_t>(C)) return 6;
  std::vector<unsigned char> x(n * kSize[h[0]]), y(n * kSize[h[1]], 0xA5);
  if (std::fread(x.data(), 1, x.size(), f) != x.size()) return 7;
  std::fclose(f);
  fxbn::KernelParams p{A.data(), B.data(), s.data(), lo.data(), hi.data(), h[6], h[7], h[5] != 0};
  int64_t r = fxbn::apply(static_cast<fxbn::DType>(h[0]), x.data(), static_cast<fxbn::DType>(h[1]), y.data(), h[2],
                          C, h[4], p, 1);
  f = std::fopen(argv[2], "wb");
  if (!f || std::fwrite(&r, sizeof r, 1, f) != 1 || std::fwrite(y.data(), 1, y.size(), f) != y.size()) return 8;
  std::fclose(f);
  return 0;
}
