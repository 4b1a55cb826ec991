// Hopper (sm_90a) building blocks for the attention kernels: shared-memory addresses, mbarriers,
// TMA tile loads, wgmma descriptors and instructions, register reallocation and named barriers.
// Each wrapper is one PTX instruction (or a short wait loop) with its contract in a comment.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace dynamicrad::cuda::sm90 {

__device__ __forceinline__ std::uint32_t smem_u32(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarriers (shared memory, 8 bytes each) ------------------------------------------------------

__device__ __forceinline__ void mbarrier_init(std::uint64_t* bar, std::uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(arrivals));
}

// Makes initialised barriers visible to the async proxy (TMA) and to other threads.
__device__ __forceinline__ void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` of asynchronous (TMA) transactions for this phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint64_t* bar, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

// Waits until the phase with parity `parity` has completed. A fresh barrier is in phase 0, so
// waiting for parity 1 returns at once (the convention that lets producers start on empty slots).
__device__ __forceinline__ void mbarrier_wait(std::uint64_t* bar, std::uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

// ---- TMA ------------------------------------------------------------------------------------------

__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}

// Loads the box at coordinates (c0 innermost .. c3) of a 4D tensor map into shared memory; the
// transfer's bytes complete on `bar`. Out-of-range elements are filled with zeros.
__device__ __forceinline__ void tma_load_4d(void* smem_dst, const CUtensorMap* map, std::uint64_t* bar,
                                            int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(smem_u32(smem_dst)),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// ---- wgmma ----------------------------------------------------------------------------------------

// Shared-memory matrix descriptor for a tile stored with the 128-byte swizzle (what TMA writes with
// CU_TENSOR_MAP_SWIZZLE_128B): rows of 64 16-bit elements (128 bytes), 8-row atoms of 1024 bytes.
//   K-major operand:  sbo = 1024 (next 8 rows of M/N), lbo unused (the 16-wide K step stays inside
//                     one 128-byte row; a K step of 16 elements moves the start address by 32 bytes).
//   MN-major operand: sbo = 1024 (next 8 rows of K), lbo = bytes between 64-element column chunks.
// The tile base must be 1024-byte aligned (base offset field 0).
__device__ __forceinline__ std::uint64_t make_smem_desc(std::uint32_t smem_addr, std::uint32_t lbo_bytes,
                                                        std::uint32_t sbo_bytes) {
  constexpr std::uint64_t kSwizzle128B = 1;  // layout type field (bits 62-63): 1 = 128-byte swizzle
  std::uint64_t desc = 0;
  // Addresses and offsets are stored in 16-byte units: 14 bits each (an 18-bit, 256 KB byte window).
  desc |= static_cast<std::uint64_t>((smem_addr & 0x3FFFF) >> 4);
  desc |= static_cast<std::uint64_t>((lbo_bytes >> 4) & 0x3FFF) << 16;
  desc |= static_cast<std::uint64_t>((sbo_bytes >> 4) & 0x3FFF) << 32;
  desc |= kSwizzle128B << 62;
  return desc;
}

// Orders earlier register writes before the following wgmma reads its register operands.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most `kPending` committed wgmma groups of this warp are still running.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Tells the compiler that `r` may change here: keeps reads and writes of wgmma accumulators and
// register operands from moving across wgmma issue and wait points.
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fence_operand(std::uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// ---- warp specialisation --------------------------------------------------------------------------

// Lowers / raises this warpgroup's register budget (sm_90a); the kernel needs a register cap at
// entry (__launch_bounds__(threads, 1)).
template <int kRegisters>
__device__ __forceinline__ void warpgroup_reg_dealloc() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void warpgroup_reg_alloc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

// Named barriers (ids 1..15; id 0 is __syncthreads): sync waits for `threads` arrivals including
// its own warp's, arrive only counts.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- wgmma instructions ----------------------------------------------------------------------------
// One wrapper per shape and operand form. The bf16 and f16 instances of each differ only in the
// input type of the PTX instruction, so one macro writes both from the same text.

// The accumulator fragment D as inline-asm operands %0.. (32 or 64 floats a thread) and the PTX
// register list that names them.
#define DR_WGMMA_D32_OPERANDS(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
  "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
  "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
  "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define DR_WGMMA_D64_OPERANDS(d) \
  DR_WGMMA_D32_OPERANDS(d),      \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), \
  "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), \
  "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), \
  "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
  "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define DR_WGMMA_D32_REGISTERS                                            \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
#define DR_WGMMA_D64_REGISTERS                                                     \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "          \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "

// D[64 x 128] (+)= A[64 x 16] * B[16 x 128]; A and B in shared memory, both K-major.
#define DR_DEFINE_WGMMA_M64N128K16_SS(suffix, type)                                                    \
  __device__ __forceinline__ void wgmma_m64n128k16_ss_##suffix(float(&d)[64], std::uint64_t desc_a,    \
                                                               std::uint64_t desc_b, int accumulate) { \
    asm volatile(                                                                                      \
        "{\n"                                                                                          \
        ".reg .pred p;\n"                                                                              \
        "setp.ne.b32 p, %66, 0;\n"                                                                     \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." type "." type " " DR_WGMMA_D64_REGISTERS         \
        "%64, %65, p, 1, 1, 0, 0;\n"                                                                   \
        "}\n"                                                                                          \
        : DR_WGMMA_D64_OPERANDS(d)                                                                     \
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));                                                  \
  }

// D[64 x N] += A[64 x 16] * B[16 x N]; A in registers (the m16n8k16 A fragment of each warp), B in
// shared memory MN-major (N contiguous). `a_b` names the operands of A and the B descriptor,
// `pred` the one of `accumulate` (they follow the 32 or 64 accumulators).
#define DR_DEFINE_WGMMA_M64NK16_RS(n, regs, suffix, type, a_b, pred)                                    \
  __device__ __forceinline__ void wgmma_m64n##n##k16_rs_##suffix(                                       \
      float(&d)[regs], const std::uint32_t(&a)[4], std::uint64_t desc_b, int accumulate) {              \
    asm volatile(                                                                                       \
        "{\n"                                                                                           \
        ".reg .pred p;\n"                                                                               \
        "setp.ne.b32 p, " pred ", 0;\n"                                                                 \
        "wgmma.mma_async.sync.aligned.m64n" #n "k16.f32." type "." type " " DR_WGMMA_D##regs##_REGISTERS \
        a_b ", p, 1, 1, 1;\n"                                                                           \
        "}\n"                                                                                           \
        : DR_WGMMA_D##regs##_OPERANDS(d)                                                                \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));                    \
  }

DR_DEFINE_WGMMA_M64N128K16_SS(bf16, "bf16")
DR_DEFINE_WGMMA_M64N128K16_SS(f16, "f16")
DR_DEFINE_WGMMA_M64NK16_RS(64, 32, bf16, "bf16", "{%32, %33, %34, %35}, %36", "%37")
DR_DEFINE_WGMMA_M64NK16_RS(64, 32, f16, "f16", "{%32, %33, %34, %35}, %36", "%37")
DR_DEFINE_WGMMA_M64NK16_RS(128, 64, bf16, "bf16", "{%64, %65, %66, %67}, %68", "%69")
DR_DEFINE_WGMMA_M64NK16_RS(128, 64, f16, "f16", "{%64, %65, %66, %67}, %68", "%69")

#undef DR_DEFINE_WGMMA_M64NK16_RS
#undef DR_DEFINE_WGMMA_M64N128K16_SS
#undef DR_WGMMA_D64_REGISTERS
#undef DR_WGMMA_D32_REGISTERS
#undef DR_WGMMA_D64_OPERANDS
#undef DR_WGMMA_D32_OPERANDS

}  // namespace dynamicrad::cuda::sm90
