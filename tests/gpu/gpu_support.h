// Shared helpers of the standalone GPU test programs (gpu_attention_test, gpu_engine_test,
// gpu_mask_check, gpu_objective_check): a portable deterministic RNG (SplitMix64 with Box-Muller
// normals), the command line (--quick, --seed, --kernel), the device banner and the case-table loop,
// CUDA status checks, device buffers, pinned host buffers and streams freed on scope exit, host <->
// device tensor copies, random tensors and dtype conversion, the CPU attention oracle with the
// relative L2 comparison, and a matcher for the field of a dynamicrad::Error. Header-only and free of
// gtest: these programs print their own tables and exit codes.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/error.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/tensor.h"
#include "../random_stream.h"

namespace gpu_test {

// ---- random numbers -----------------------------------------------------------------------------

using Rng = dr_test::Rng;  // the stream of the CPU tests (random_stream.h)

// ---- the command line and the run ---------------------------------------------------------------

struct CommandLine {
  bool quick = false;
  std::uint64_t seed = 0;
  std::string kernel;  // --kernel NAME, where the program takes it
};

// Reads --quick, --seed N and, with `with_kernel`, --kernel NAME into `cl` (which holds the
// defaults); false, after "usage: <program> <options>" on stderr, on anything else.
inline bool parse_command_line(int argc, char** argv, bool with_kernel, const char* options, CommandLine& cl) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      cl.quick = true;
    } else if (a == "--seed" && i + 1 < argc) {
      cl.seed = std::stoull(argv[++i]);
    } else if (with_kernel && a == "--kernel" && i + 1 < argc) {
      cl.kernel = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s %s\n", argv[0], options);
      return false;
    }
  }
  return true;
}

// Runs body; when it throws a std::exception, sets `note` to "exception: <what>" and returns false.
inline bool run_noting_exception(const std::function<void()>& body, std::string& note) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    note = std::string("exception: ") + e.what();
    return false;
  }
}

// Runs run(case) for each case in turn and prints its table row with print(index, case, result),
// flushing stdout after each. A case whose run throws a std::exception gets a default Result with
// ok false and the note "exception: <what>". Returns how many cases failed.
template <typename Result, typename Case, typename Run, typename Print>
int run_cases(const std::vector<Case>& cases, Run run, Print print) {
  int failures = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    Result r;
    if (!run_noting_exception([&] { r = run(cases[i]); }, r.note)) r.ok = false;
    failures += r.ok ? 0 : 1;
    print(i, cases[i], r);
    std::fflush(stdout);
  }
  return failures;
}

// ---- CUDA resources -----------------------------------------------------------------------------

// Throws std::runtime_error("what: <CUDA message>") unless `status` is cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Makes `device` current for its lifetime.
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~CurrentDevice() { cudaSetDevice(previous_); }
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;

 private:
  int previous_ = 0;
};

// Calls release() with `device` current, then restores the current device (never throws).
template <typename Release>
void release_on(int device, Release release) {
  int previous = device;
  cudaGetDevice(&previous);
  if (previous != device) cudaSetDevice(device);
  release();
  if (previous != device) cudaSetDevice(previous);
}

// A buffer on the current device, freed there on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  int device = 0;
  explicit DeviceBuffer(std::size_t bytes) {
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaMalloc(&ptr, std::max<std::size_t>(bytes, 16)), "cudaMalloc");
  }
  ~DeviceBuffer() {
    release_on(device, [this] { cudaFree(ptr); });
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Pinned (page-locked) host memory, freed on scope exit.
struct PinnedBuffer {
  void* ptr = nullptr;
  explicit PinnedBuffer(std::size_t bytes) {
    check(cudaMallocHost(&ptr, std::max<std::size_t>(bytes, 16)), "cudaMallocHost");
  }
  ~PinnedBuffer() { cudaFreeHost(ptr); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
};

// A stream of the current device, destroyed on scope exit.
struct Stream {
  cudaStream_t s = nullptr;
  int device = 0;
  Stream() {
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaStreamCreate(&s), "cudaStreamCreate");
  }
  ~Stream() {
    release_on(device, [this] { cudaStreamDestroy(s); });
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

// Prints "device: <name> (sm_XY, N SMs), seed S"; false (after "no CUDA device" on stderr) when
// there is no usable device.
inline bool print_device(std::uint64_t seed) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return false;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s (sm_%d%d, %d SMs), seed %llu\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, static_cast<unsigned long long>(seed));
  return true;
}

// The start of main(): parse_command_line(), then print_device(); false when the program should
// exit with status 2 (bad arguments or no device).
inline bool start_program(int argc, char** argv, bool with_kernel, const char* options, CommandLine& cl) {
  return parse_command_line(argc, argv, with_kernel, options, cl) && print_device(cl.seed);
}

// ---- tensors ------------------------------------------------------------------------------------

inline dynamicrad::Shape shape_of(std::int64_t b, std::int64_t t, std::int64_t h, std::int64_t d) {
  dynamicrad::Shape s;
  s.batch = b;
  s.tokens = t;
  s.heads = h;
  s.head_dim = d;
  return s;
}

inline std::size_t bytes_of(const dynamicrad::HostTensor& t) {
  return static_cast<std::size_t>(t.shape().elements()) * dynamicrad::dtype_size(t.dtype());
}

// Elements drawn from N(0, stddev^2), rounded to `dtype`.
inline dynamicrad::HostTensor random_tensor(Rng& rng, dynamicrad::DType dtype, const dynamicrad::Shape& shape,
                                            double stddev) {
  dynamicrad::HostTensor t(dtype, shape);
  for (std::int64_t i = 0; i < shape.elements(); ++i) t.set(i, static_cast<float>(stddev * rng.normal()));
  return t;
}

// `src` rounded to `dtype`, element by element.
inline dynamicrad::HostTensor converted(const dynamicrad::HostTensor& src, dynamicrad::DType dtype) {
  dynamicrad::HostTensor t(dtype, src.shape());
  for (std::int64_t i = 0; i < src.shape().elements(); ++i) t.set(i, src.get(i));
  return t;
}

// Copies the whole of `src` to `dst` (at least bytes_of(src) bytes of device memory).
inline void upload(void* dst, const dynamicrad::HostTensor& src, const char* what) {
  check(cudaMemcpy(dst, src.view().data, bytes_of(src), cudaMemcpyHostToDevice), what);
}

// A host copy of the device tensor at `src`.
inline dynamicrad::HostTensor download(const void* src, dynamicrad::DType dtype, const dynamicrad::Shape& shape,
                                       const char* what) {
  dynamicrad::HostTensor t(dtype, shape);
  check(cudaMemcpy(t.mutable_view().data, src, bytes_of(t), cudaMemcpyDeviceToHost), what);
  return t;
}

// A host copy of `count` floats at `src`.
inline std::vector<float> download_floats(const void* src, std::size_t count, const char* what) {
  std::vector<float> v(count);
  check(cudaMemcpy(v.data(), src, count * sizeof(float), cudaMemcpyDeviceToHost), what);
  return v;
}

// ---- the oracle ---------------------------------------------------------------------------------

// attention_reference's output (f32) and log-sum-exp for one call.
struct Reference {
  dynamicrad::HostTensor out;
  std::vector<float> lse;
};

inline Reference attention_oracle(const dynamicrad::HostTensor& q, const dynamicrad::HostTensor& k,
                                  const dynamicrad::HostTensor& v, const dynamicrad::BlockLayout& layout,
                                  const dynamicrad::AttentionOptions& options = {}) {
  const dynamicrad::Shape& s = q.shape();
  Reference ref{dynamicrad::HostTensor(dynamicrad::DType::f32, s),
                std::vector<float>(static_cast<std::size_t>(s.batch * s.heads * s.tokens))};
  dynamicrad::AttentionArgs args{q.view(), k.view(), v.view(), ref.out.mutable_view(), ref.lse.data(), nullptr};
  dynamicrad::attention_reference(args, options, &layout);
  return ref;
}

struct L2Error {
  double rel_l2 = 0.0;          // ||got - ref|| / ||ref|| over the finite elements of got (absolute if ref is 0)
  std::int64_t nonfinite = 0;   // elements of got that are NaN or infinite
};

inline L2Error relative_l2(const dynamicrad::HostTensor& got, const dynamicrad::HostTensor& ref) {
  L2Error r;
  double err2 = 0.0, ref2 = 0.0;
  for (std::int64_t i = 0; i < got.shape().elements(); ++i) {
    const double a = got.get(i), b = ref.get(i);
    if (!std::isfinite(a)) {
      ++r.nonfinite;
      continue;
    }
    err2 += (a - b) * (a - b);
    ref2 += b * b;
  }
  r.rel_l2 = ref2 > 0.0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  return r;
}

// ---- errors -------------------------------------------------------------------------------------

// What a call threw: nothing, a dynamicrad::Error (with its field) or another std::exception.
struct Thrown {
  bool error = false;  // a dynamicrad::Error
  bool other = false;  // another std::exception
  std::string field;   // the Error's field
  std::string what;
};

inline Thrown thrown_by(const std::function<void()>& body) {
  Thrown t;
  try {
    body();
  } catch (const dynamicrad::Error& e) {
    t.error = true;
    t.field = e.field();
    t.what = e.what();
  } catch (const std::exception& e) {
    t.other = true;
    t.what = e.what();
  }
  return t;
}

// "" when body throws dynamicrad::Error with this field, else what happened.
inline std::string expect_error(const std::string& field, const std::function<void()>& body) {
  const Thrown t = thrown_by(body);
  if (t.error) return t.field == field ? "" : "field \"" + t.field + "\", expected \"" + field + "\": " + t.what;
  if (t.other) return "not a dynamicrad::Error: " + t.what;
  return "no error (expected field " + field + ")";
}

}  // namespace gpu_test
