// Runs the package's CUDA C kernels on the host, one block at a time, for tests.
//
// Every CUDA thread of a block is a fiber (its own stack) on ONE host thread; a fiber runs
// until it reaches a warp- or block-synchronous call (__shfl_down_sync, __any_sync,
// __syncwarp, __syncthreads), where it hands control back to the scheduler. A warp runs
// until all its lanes meet at a warp-synchronous call (lanes at different calls, or
// exited, are a divergence error: undefined behaviour on a GPU); the warps of a block run
// one after another up to __syncthreads. Floating-point intrinsics are plain IEEE double
// operations (compiled with -ffp-contract=off on x86-64, SSE2: every operation rounded
// once, to nearest), which is what __dadd_rn & co. are.
//
// What it cannot see directly: data races (fibers never run concurrently; the reverse
// schedule below shows their effect) and the GPU's own arithmetic (its IEEE operations
// are specified to the bit). Accesses outside arrays are caught on the Python side
// (fake_cupy.py: inaccessible pages and guard bytes). See tests/cuda_emulator/__init__.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA host emulator switches fibers with x86-64 assembly"
#endif

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// One block runs at a time, so a function-level static is the block's shared memory. They
// all live in the section emu_shared, filled with NaN bytes before every block: a kernel
// that reads shared memory its block has not written sees NaN, not the last block's data.
#define __shared__ static __attribute__((section("emu_shared"), used))
extern "C" char __start_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace emu {

enum State { RUNNABLE, AT_WARP, AT_BLOCK, DONE };

struct Fiber {
    void *sp = nullptr;  // saved stack pointer while switched out
    dim3 tid;
    State state = RUNNABLE;
    unsigned long long warp_syncs = 0;  // warp barriers passed (shuffle buffer parity)
};

constexpr unsigned MAX_THREADS = 1024;
constexpr size_t STACK_BYTES = 32 * 1024;
// fiber t's stack ends (t % 64) cache lines below its slot's end: stacks a power of two
// apart would all map their hot top frames to the same cache sets
constexpr size_t STACK_SLOT = STACK_BYTES + 64 * 64;
constexpr unsigned FULL_MASK = 0xffffffffu;

inline std::vector<Fiber> fibers;
inline std::vector<char> stacks;
inline Fiber *current = nullptr;
inline void *scheduler_sp = nullptr;
inline dim3 block_idx, block_dim, grid_dim;
inline const std::function<void()> *body = nullptr;
inline char error[600] = "";
// Schedule: 0 runs warps and lanes in ascending order, 1 in descending order. A kernel
// whose result depends on the order (a missing barrier between threads that share
// memory) gives different bits under the two: the tests run both.
inline int reverse_order = 0;
inline bool failed = false;
// warp shuffle exchange: two buffers used alternately, so one barrier per shuffle suffices
inline unsigned long long exchange[2][MAX_THREADS];

extern "C" void emu_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .p2align 4
    .hidden emu_switch
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

inline void fail(const char *what) {
    if (!failed) {
        std::snprintf(error, sizeof error, "block (%u,%u,%u): %s", block_idx.x, block_idx.y,
                      block_idx.z, what);
        failed = true;
    }
}

// A fiber's first and only frame: runs the kernel body, then parks for good.
[[noreturn]] inline void fiber_main() {
    (*body)();
    current->state = DONE;
    emu_switch(&current->sp, scheduler_sp);
    std::abort();  // a finished fiber is never switched back in
}

inline void yield_to_scheduler(State wait) {
    current->state = wait;
    emu_switch(&current->sp, scheduler_sp);
}

// A fresh fiber whose stack grows down from end (at least STACK_BYTES above its slot).
inline void prepare(Fiber &f, char *end) {
    // after "ret" into fiber_main, rsp must be 8 mod 16, as after a call
    uintptr_t top = reinterpret_cast<uintptr_t>(end) & ~uintptr_t(15);
    auto *sp = reinterpret_cast<uintptr_t *>(top - 8);
    *sp = 0;                                                 // fiber_main's "return address"
    *--sp = reinterpret_cast<uintptr_t>(&fiber_main);       // popped by emu_switch's ret
    for (int r = 0; r < 6; ++r) *--sp = 0;                  // rbp rbx r12 r13 r14 r15
    f.sp = sp;
    f.state = RUNNABLE;
    f.warp_syncs = 0;
}

// Run warp w's lanes until none can go on: repeated while all 32 meet at a warp-synchronous
// call. Warps interact only through __syncthreads (and memory), so running one warp as far
// as it goes before the next is one of the schedules a GPU may choose.
inline void run_warp(unsigned w) {
    Fiber *lanes = fibers.data() + 32 * w;
    for (;;) {
        unsigned at_warp = 0;
        for (unsigned i = 0; i < 32; ++i) {
            const unsigned l = reverse_order ? 31 - i : i;
            if (lanes[l].state == RUNNABLE) {
                current = lanes + l;
                emu_switch(&scheduler_sp, lanes[l].sp);
                if (failed) return;
            }
            at_warp += lanes[l].state == AT_WARP;
        }
        if (at_warp == 32) {
            for (unsigned l = 0; l < 32; ++l) lanes[l].state = RUNNABLE;
        } else {
            if (at_warp) {
                char what[160];
                std::snprintf(what, sizeof what,
                              "warp %u: %u of its lanes reached a warp-synchronous call, the "
                              "others __syncthreads or the end of the kernel (divergence)",
                              w, at_warp);
                fail(what);
            }
            return;  // every lane waits at __syncthreads or has finished
        }
    }
}

// Run the kernel body on the whole grid, block after block; 0 or -1 (see error).
inline int launch(unsigned gx, unsigned bx, const std::function<void()> &kernel_body) {
    failed = false;
    error[0] = 0;
    if (bx == 0 || bx > MAX_THREADS || bx % 32) {
        fail("the block size must be a multiple of 32 in 32..1024");
        return -1;
    }
    grid_dim = dim3{gx, 1, 1};
    block_dim = dim3{bx, 1, 1};
    body = &kernel_body;
    fibers.assign(bx, Fiber{});
    if (stacks.size() < size_t(bx) * STACK_SLOT) stacks.resize(size_t(bx) * STACK_SLOT);
    for (unsigned b = 0; b < gx && !failed; ++b) {
        block_idx = dim3{b, 0, 0};
        if (__start_emu_shared != __stop_emu_shared)
            std::memset(__start_emu_shared, 0xFF, size_t(__stop_emu_shared - __start_emu_shared));
        for (unsigned t = 0; t < bx; ++t) {
            prepare(fibers[t], stacks.data() + size_t(t + 1) * STACK_SLOT - (t % 64) * 64);
            fibers[t].tid = dim3{t, 0, 0};
        }
        for (;;) {  // one round per __syncthreads
            for (unsigned i = 0; i < bx / 32 && !failed; ++i)
                run_warp(reverse_order ? bx / 32 - 1 - i : i);
            if (failed) break;  // parked fibers are abandoned: they own no resources
            bool all_done = true;
            for (unsigned t = 0; t < bx; ++t) {
                if (fibers[t].state == AT_BLOCK) fibers[t].state = RUNNABLE;
                all_done = all_done && fibers[t].state == DONE;
            }
            if (all_done) break;
        }
    }
    current = nullptr;
    return failed ? -1 : 0;
}

inline void require_full(unsigned mask, const char *what) {
    if (mask != FULL_MASK) {
        char msg[120];
        std::snprintf(msg, sizeof msg, "%s with mask %#x: only the full mask is emulated",
                      what, mask);
        fail(msg);
    }
}

template <class T>
inline T shfl_down(unsigned mask, T value, unsigned delta) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
    require_full(mask, "__shfl_down_sync");
    Fiber *me = current;
    const unsigned t = me->tid.x, lane = t & 31, buf = me->warp_syncs & 1;
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    exchange[buf][t] = bits;
    yield_to_scheduler(AT_WARP);
    ++me->warp_syncs;
    const unsigned src = lane + delta < 32 ? t + delta : t;
    T out;
    std::memcpy(&out, &exchange[buf][src], sizeof(T));
    return out;
}

inline int any_sync(unsigned mask, int predicate) {
    require_full(mask, "__any_sync");
    Fiber *me = current;
    const unsigned t = me->tid.x, w0 = t & ~31u, buf = me->warp_syncs & 1;
    exchange[buf][t] = predicate != 0;
    yield_to_scheduler(AT_WARP);
    ++me->warp_syncs;
    unsigned long long any = 0;
    for (unsigned l = 0; l < 32; ++l) any |= exchange[buf][w0 + l];
    return any != 0;
}

}  // namespace emu

#define threadIdx (emu::current->tid)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __longlong_as_double(long long v) {
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
}
inline long long __double_as_longlong(double d) {
    long long v;
    std::memcpy(&v, &d, sizeof v);
    return v;
}
template <class A, class B>
inline std::common_type_t<A, B> min(A a, B b) { return a < b ? a : b; }
template <class A, class B>
inline std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }

template <class T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
    return emu::shfl_down(mask, value, delta);
}
inline int __any_sync(unsigned mask, int predicate) { return emu::any_sync(mask, predicate); }
inline void __syncwarp(unsigned mask = emu::FULL_MASK) {
    emu::require_full(mask, "__syncwarp");
    emu::yield_to_scheduler(emu::AT_WARP);
    ++emu::current->warp_syncs;
}
inline void __syncthreads() { emu::yield_to_scheduler(emu::AT_BLOCK); }

extern "C" const char *emu_error() { return emu::error; }
extern "C" void emu_set_schedule(int reverse) { emu::reverse_order = reverse != 0; }
