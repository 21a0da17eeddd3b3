// Benchmark of the update and shard codecs: encode and decode throughput of
// each against a plain memcpy of the same fp32 bytes in the same run, and the
// bytes each costs per parameter. Medians over repetitions; prints a table
// and writes JSON and CSV.
//
//   bazel run -c opt //common/codec:codec_bench -- --out_dir=/tmp/bench

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/io/file_util.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "common/codec/update_codec.h"

ABSL_FLAG(int64_t, elements, 1 << 22, "parameters per tensor");
ABSL_FLAG(int, repetitions, 9, "timed repetitions (the median is reported)");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON and CSV go");

namespace fedge {
namespace {

template <typename Fn>
double MedianSeconds(int repetitions, Fn fn) {
  std::vector<double> times;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

int Run() {
  const int64_t n = absl::GetFlag(FLAGS_elements);
  const int reps = absl::GetFlag(FLAGS_repetitions);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0, 0.01f);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  std::vector<float> copy(n), sum(n);
  const int64_t slices = 256;

  const double bytes = 4.0 * n;
  const double memcpy_s = MedianSeconds(reps, [&] {
    std::memcpy(copy.data(), values.data(), 4 * n);
    asm volatile("" : : "r"(copy.data()) : "memory");
  });
  const double memcpy_gbs = bytes / memcpy_s / 1e9;

  struct Case {
    const char* name;
    UpdateSpec spec;
  };
  const Case cases[] = {
      {"fp32", {Codec::kFp32, 0, 1}},  {"fp16", {Codec::kFp16, 0, 1}},
      {"q8", {Codec::kQ, 8, slices}},  {"q4", {Codec::kQ, 4, slices}},
      {"q2", {Codec::kQ, 2, slices}},  {"sign-ef", {Codec::kSignEf, 1, slices}},
      {"mixed2", {Codec::kMixed, 2, slices}},
  };
  std::printf("%lld parameters (%.1f MB fp32); memcpy %.2f GB/s; medians of %d\n\n",
              static_cast<long long>(n), bytes / 1e6, memcpy_gbs, reps);
  std::printf("%-8s %10s %12s %12s %12s %12s %12s\n", "codec", "bytes/par", "vs fp32",
              "encode GB/s", "/ memcpy", "accum GB/s", "/ memcpy");
  std::ostringstream csv, json;
  csv << "codec,bytes_per_parameter,compression_vs_fp32,encode_gbs,encode_vs_memcpy,"
         "accumulate_gbs,accumulate_vs_memcpy\n";
  json << "{\n  \"parameters\": " << n << ",\n  \"memcpy_gbs\": " << memcpy_gbs
       << ",\n  \"codecs\": {\n";
  bool first = true;
  for (const Case& c : cases) {
    WireTensor t;
    t.name = "w";
    t.shape = {static_cast<uint32_t>(slices), static_cast<uint32_t>(n / slices)};
    std::vector<float> residual(n, 0.0f);
    std::vector<SliceInfo> mixed(slices, SliceInfo{2, 0.01f, 0.01f});
    auto encode = [&] {
      absl::Status s = c.spec.codec == Codec::kMixed
                           ? EncodeMixed(values, mixed, &t)
                           : EncodeUpdate(values, c.spec, 7, &residual, &t);
      if (!s.ok()) std::fprintf(stderr, "%s: %s\n", c.name, s.ToString().c_str());
    };
    const double encode_s = MedianSeconds(reps, encode);
    const double accumulate_s = MedianSeconds(reps, [&] {
      absl::Status s = AccumulateDecoded(t, 0.5f, absl::MakeSpan(sum));
      if (!s.ok()) std::fprintf(stderr, "%s: %s\n", c.name, s.ToString().c_str());
    });
    // Throughput in fp32 bytes of parameters processed per second.
    const double encode_gbs = bytes / encode_s / 1e9;
    const double accumulate_gbs = bytes / accumulate_s / 1e9;
    const double per_param = static_cast<double>(t.payload.size()) / n;
    std::printf("%-8s %10.4f %11.1fx %12.2f %12.3f %12.2f %12.3f\n", c.name, per_param,
                4.0 / per_param, encode_gbs, encode_gbs / memcpy_gbs, accumulate_gbs,
                accumulate_gbs / memcpy_gbs);
    csv << absl::StrFormat("%s,%.5f,%.2f,%.3f,%.4f,%.3f,%.4f\n", c.name, per_param,
                           4.0 / per_param, encode_gbs, encode_gbs / memcpy_gbs,
                           accumulate_gbs, accumulate_gbs / memcpy_gbs);
    json << (first ? "" : ",\n")
         << absl::StrFormat(
                "    \"%s\": {\"bytes_per_parameter\": %.5f, \"encode_vs_memcpy\": %.4f, "
                "\"accumulate_vs_memcpy\": %.4f}",
                c.name, per_param, encode_gbs / memcpy_gbs, accumulate_gbs / memcpy_gbs);
    first = false;
  }
  json << "\n  }\n}\n";
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  if (absl::Status s = CreateDirectories(dir); !s.ok()) {
    std::fprintf(stderr, "codec_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  std::ofstream(dir + "/codec_bench.json") << json.str();
  std::ofstream(dir + "/codec_bench.csv") << csv.str();
  std::printf("\nthroughput counts fp32 bytes of parameters; wrote %s/codec_bench.{json,csv}\n",
              dir.c_str());
  return 0;
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return fedge::Run();
}
