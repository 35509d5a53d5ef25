// Host (g++, C++20) implementation of the subset of the AMD AIE API that aielower's generated kernels use.
//
// The kernels in aielower/backends/aie/templates/kernels/ compile unchanged with Peano against the real API
// (Xilinx/aie_api, include/aie_api/aie.hpp) and with g++ against this file, so that the host emulator runs the
// very code the NPU runs. Semantics follow the real API's documented element-wise definitions; numerics are
// exact IEEE fp32 where the hardware may approximate (noted per entity). Everything not listed is absent on
// purpose: a kernel that uses more of the API fails to compile on the host, which is the signal to add it here
// after checking the real signature.
//
// Entity                                    real declaration it mirrors (Xilinx/aie_api)
// ----------------------------------------  ---------------------------------------------------------------------
// bfloat16 (global type)                    compiler builtin type; include/aie_api/aie_types.hpp uses it as is.
//                                           float -> bfloat16 rounds to nearest even, bfloat16 -> float is exact.
// accfloat (global accumulator tag)         compiler builtin tag; detail/aie2/accum_native_types.hpp
// aie::rounding_mode, aie::set_rounding     aie_types.hpp (rounding_mode::conv_even), aie.hpp set_rounding().
//                                           Host: always round-to-nearest-even, which is conv_even.
// aie::vector<T, N>                         vector.hpp: size(), get(), set(), operator[], cast_to<U>(),
//                                           extract<M>(idx), insert(idx, subvector), grow_replicate<M>()
// aie::mask<N>                              mask.hpp (only as the result of lt() and the input of select())
// aie::accum<accfloat, N>                   accum.hpp: explicit accum(vector), from_vector(), to_vector<T>()
// aie::load_v<N>(p), load_unaligned_v<N>(p) aie.hpp (group_memory)
// aie::store_v(p, v), store_unaligned_v     aie.hpp (group_memory)
// aie::broadcast<T, N>(a), aie::zeros<T,N>() aie.hpp (group_init), zeros for vectors and accumulators
// aie::concat(v, w)                         aie.hpp (group_reshape)
// aie::interleave_zip(v, w, chunk)          aie.hpp (group_reshape)
// aie::select(v1, v2, m), aie::lt(v, a)     aie.hpp (group_reshape / group_compare)
// aie::add, aie::sub (vector/vector, vector/scalar), neg, abs  aie.hpp (group_arithmetic)
// aie::add, aie::sub (accum, vector) -> accum              aie.hpp (group_arithmetic): acc[i] +/- v[i] in fp32
// aie::mul (vector/vector, vector/scalar) -> accum         aie.hpp; default accumulator of bf16 and fp32 is accfloat
// aie::mac, aie::msc (accum, vector, vector|scalar)        aie.hpp: acc[i] +/- v1[i] * v2[i]
// aie::max, aie::min (vector/vector, vector/scalar)        aie.hpp (group_compare)
// aie::reduce_add, aie::reduce_max                         aie.hpp (group_reduce)
// aie::bit_and(a, v), aie::downshift, aie::upshift         aie.hpp (group_bit / group_arithmetic)
// aie::to_float<float>(vector<int/uint>)                   aie.hpp (group_fp_conversion), Gen2 (AIE-ML, AIE2P)
// aie::to_fixed<int32>(vector<float>, shift)               aie.hpp (group_fp_conversion); rounds per the rounding
//                                                          mode on hardware, to nearest even here
// aie::inv(float|vector<float>), aie::invsqrt(float)      aie.hpp (group_elementary); the hardware computes
//                                                          approximations (detail/aie2/elementary.hpp), the host
//                                                          is exact IEEE division / square root
// aie::exp2<bfloat16>(vector<float, N>) -> vector<bf16, N> aie.hpp (group_elementary): only for XDNA2 (AIE2P, with
//                                                          TR = bfloat16) and AIE-MLv2; AIE-ML has none.
//                                                          AIE2P runs one exp2 instruction per 16 lanes
//                                                          (detail/aie2p/elementary.hpp, ::exp2(v16accfloat) ->
//                                                          v16bfloat16); the API states no accuracy. The host
//                                                          rounds the exact 2^x to bf16 (via fp32): never less
//                                                          exact than the hardware's bf16 result can be.
// aie::mmul<M, K, N, TA, TB, AccTag>                       aie.hpp class mmul: ctor(), ctor(accum),
//                                                          ctor(vector<float, size_C>), mul(a, b), mac(a, b),
//                                                          to_accum(), to_vector<T>(); A (MxK), B (KxN) and C (MxN)
//                                                          are row-major within their block, as documented there.
//
// The host header has no architecture: it offers aie::exp2 to every kernel, and the kernels call it only when they
// were generated for AIE2P (templates/kernels/_exp2.cc.j2 checks __AIE_ARCH__ on the real compiler). aie::tanh
// (XDNA2 too) is not provided: no kernel uses it.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------------------------------- bf16

struct bfloat16 {
    uint16_t bits = 0;

    bfloat16() = default;
    bfloat16(float f) : bits(round_bits(f)) {}  // NOLINT: implicit, as the builtin type converts implicitly
    operator float() const {
        uint32_t u = uint32_t(bits) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }

    // Round to nearest, ties to even, on the float32 bit pattern; NaN stays a quiet NaN.
    static uint16_t round_bits(float f) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if (std::isnan(f)) return uint16_t((u >> 16) | 0x0040u);
        return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 must be 16 bits: kernels read it from DMA buffers");

struct accfloat {};  // accumulator tag: fp32 lanes

namespace aie {

// --------------------------------------------------------------------------------------------- rounding mode

enum class rounding_mode {
    floor, ceil, positive_inf, negative_inf, symmetric_inf, symmetric_zero, conv_even, conv_odd
};

// Host conversions always round to nearest even (conv_even), the mode the kernels select.
inline void set_rounding(rounding_mode) {}

// --------------------------------------------------------------------------------------------------- vector

template <typename T, unsigned N>
class vector {
    static_assert(N > 0, "empty vector");

public:
    using value_type = T;
    static constexpr unsigned size() { return N; }
    static constexpr bool is_floating_point() { return std::is_same_v<T, float> || std::is_same_v<T, bfloat16>; }

    vector() : d_{} {}

    T get(unsigned i) const { return d_[i]; }
    void set(T v, unsigned i) { d_[i] = v; }
    T operator[](unsigned i) const { return d_[i]; }
    T& operator[](unsigned i) { return d_[i]; }

    // Reinterpret the bits as elements of another type (vector::cast_to in the real API).
    template <typename U>
    vector<U, N * sizeof(T) / sizeof(U)> cast_to() const {
        static_assert((N * sizeof(T)) % sizeof(U) == 0, "cast_to must keep the vector's bit width");
        vector<U, N * sizeof(T) / sizeof(U)> r;
        std::memcpy(r.data(), d_.data(), N * sizeof(T));
        return r;
    }

    // Subvector idx of M elements.
    template <unsigned M>
    vector<T, M> extract(unsigned idx) const {
        static_assert(N % M == 0, "extract size must divide the vector size");
        vector<T, M> r;
        for (unsigned i = 0; i < M; ++i) r[i] = d_[idx * M + i];
        return r;
    }

    // Replace subvector idx (of M elements) with v; returns this vector, as the real insert does.
    template <unsigned M>
    vector& insert(unsigned idx, const vector<T, M>& v) {
        static_assert(N % M == 0, "insert size must divide the vector size");
        for (unsigned i = 0; i < M; ++i) d_[idx * M + i] = v[i];
        return *this;
    }

    // A larger vector holding this one repeated (vector::grow_replicate in the real API).
    template <unsigned M>
    vector<T, M> grow_replicate() const {
        static_assert(M % N == 0, "grow_replicate must fill the output with whole copies");
        vector<T, M> r;
        for (unsigned i = 0; i < M; ++i) r[i] = d_[i % N];
        return r;
    }

    // Host-only access for the implementation below (the real vector wraps a native register).
    T* data() { return d_.data(); }
    const T* data() const { return d_.data(); }

private:
    std::array<T, N> d_;
};

template <unsigned N>
class mask {
public:
    bool test(unsigned i) const { return b_[i]; }
    void set(unsigned i, bool v) { b_[i] = v; }
    static constexpr unsigned size() { return N; }

private:
    std::array<bool, N> b_{};
};

// ----------------------------------------------------------------------------------------------- accumulator

template <typename Tag, unsigned N>
class accum;

template <unsigned N>
class accum<accfloat, N> {
public:
    using value_type = accfloat;
    static constexpr unsigned size() { return N; }

    accum() : d_{} {}
    template <typename T>
    explicit accum(const vector<T, N>& v) { from_vector(v); }

    template <typename T>
    void from_vector(const vector<T, N>& v, int /*shift*/ = 0) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>, "accfloat holds float or bfloat16");
        for (unsigned i = 0; i < N; ++i) d_[i] = float(v[i]);
    }

    // float: exact; bfloat16: rounded per the rounding mode (to nearest even on the host).
    template <typename T>
    vector<T, N> to_vector(int /*shift*/ = 0) const {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>, "accfloat converts to float/bf16");
        vector<T, N> r;
        for (unsigned i = 0; i < N; ++i) r[i] = T(d_[i]);
        return r;
    }

    float lane(unsigned i) const { return d_[i]; }  // host-only
    float& lane(unsigned i) { return d_[i]; }       // host-only

private:
    std::array<float, N> d_;
};

namespace detail {
template <typename T>
constexpr bool is_accum_tag_v = std::is_same_v<T, accfloat>;

template <typename T>
float as_float(T x) {
    return float(x);
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------------- memory

template <unsigned N, typename T>
vector<std::remove_const_t<T>, N> load_v(const T* ptr) {
    vector<std::remove_const_t<T>, N> r;
    std::memcpy(r.data(), ptr, N * sizeof(T));
    return r;
}

template <unsigned N, typename T>
vector<std::remove_const_t<T>, N> load_unaligned_v(const T* ptr, unsigned /*aligned_elems*/ = 1) {
    return load_v<N>(ptr);
}

template <typename T1, typename T2, unsigned N>
T1* store_v(T1* ptr, const vector<T2, N>& v) {
    static_assert(std::is_same_v<std::remove_const_t<T1>, T2>, "store_v: pointer and vector types differ");
    std::memcpy(ptr, v.data(), N * sizeof(T2));
    return ptr;
}

template <typename T1, typename T2, unsigned N>
T1* store_unaligned_v(T1* ptr, const vector<T2, N>& v, unsigned /*aligned_elems*/ = 1) {
    return store_v(ptr, v);
}

// ------------------------------------------------------------------------------------------------------ init

template <typename T, unsigned N>
vector<T, N> broadcast(T a) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = a;
    return r;
}

template <typename T, unsigned N>
    requires(!detail::is_accum_tag_v<T>)
vector<T, N> zeros() {
    return broadcast<T, N>(T(0.0f));
}

template <typename Tag, unsigned N>
    requires(detail::is_accum_tag_v<Tag>)
accum<Tag, N> zeros() {
    return accum<Tag, N>();
}

// --------------------------------------------------------------------------------------------------- reshape

template <typename T, unsigned N, typename... Vs>
auto concat(const vector<T, N>& v, const Vs&... vs) {
    constexpr unsigned M = N * (1 + sizeof...(Vs));
    vector<T, M> r;
    unsigned off = 0;
    auto put = [&](const vector<T, N>& x) {
        for (unsigned i = 0; i < N; ++i) r[off + i] = x[i];
        off += N;
    };
    put(v);
    (put(vs), ...);
    return r;
}

// out = { v[0:c], w[0:c], v[c:2c], w[c:2c], ... }, split into two vectors of N.
template <typename T, unsigned N>
std::pair<vector<T, N>, vector<T, N>> interleave_zip(const vector<T, N>& v, const vector<T, N>& w, unsigned chunk) {
    std::array<T, 2 * N> out;
    unsigned o = 0;
    for (unsigned base = 0; base < N; base += chunk) {
        for (unsigned i = 0; i < chunk; ++i) out[o++] = v[base + i];
        for (unsigned i = 0; i < chunk; ++i) out[o++] = w[base + i];
    }
    std::pair<vector<T, N>, vector<T, N>> r;
    for (unsigned i = 0; i < N; ++i) {
        r.first[i] = out[i];
        r.second[i] = out[N + i];
    }
    return r;
}

template <typename T, unsigned N>
mask<N> lt(const vector<T, N>& v, T a) {
    mask<N> m;
    for (unsigned i = 0; i < N; ++i) m.set(i, detail::as_float(v[i]) < detail::as_float(a));
    return m;
}

// out[i] = m[i] ? v2[i] : v1[i]
template <typename T, unsigned N>
vector<T, N> select(const vector<T, N>& v1, const vector<T, N>& v2, const mask<N>& m) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = m.test(i) ? v2[i] : v1[i];
    return r;
}

// ------------------------------------------------------------------------------------------------ arithmetic

namespace detail {
template <typename T, unsigned N, typename F>
vector<T, N> map2(const vector<T, N>& a, const vector<T, N>& b, F f) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = T(f(a[i], b[i]));
    return r;
}
}  // namespace detail

template <typename T, unsigned N>
vector<T, N> add(const vector<T, N>& a, const vector<T, N>& b) {
    return detail::map2(a, b, [](T x, T y) { return x + y; });
}
template <typename T, unsigned N>
vector<T, N> add(const vector<T, N>& a, T b) {
    return add(a, broadcast<T, N>(b));
}
template <typename T, unsigned N>
vector<T, N> sub(const vector<T, N>& a, const vector<T, N>& b) {
    return detail::map2(a, b, [](T x, T y) { return x - y; });
}
template <typename T, unsigned N>
vector<T, N> sub(const vector<T, N>& a, T b) {
    return sub(a, broadcast<T, N>(b));
}
template <typename T, unsigned N>
vector<T, N> neg(const vector<T, N>& v) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = T(-v[i]);
    return r;
}
template <typename T, unsigned N>
vector<T, N> abs(const vector<T, N>& v) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = T(std::fabs(float(v[i])));
    return r;
}
template <typename T, unsigned N>
vector<T, N> max(const vector<T, N>& a, const vector<T, N>& b) {
    return detail::map2(a, b, [](T x, T y) { return float(x) < float(y) ? y : x; });
}
template <typename T, unsigned N>
vector<T, N> max(const vector<T, N>& a, T b) {
    return max(a, broadcast<T, N>(b));
}
template <typename T, unsigned N>
vector<T, N> min(const vector<T, N>& a, const vector<T, N>& b) {
    return detail::map2(a, b, [](T x, T y) { return float(y) < float(x) ? y : x; });
}
template <typename T, unsigned N>
vector<T, N> min(const vector<T, N>& a, T b) {
    return min(a, broadcast<T, N>(b));
}

// Floating-point products accumulate in fp32 (accfloat), the default accumulator of bf16 x bf16 and fp32 x fp32.
// A bf16 x bf16 product is exact in fp32; fp32 x fp32 is rounded once (the hardware emulates it with bf16 parts).
// Host-only check: with AIELOWER_HOST_NO_FP32_PRODUCTS defined, an fp32 x fp32 vector product does not compile
// (tests build every kernel so, to keep emulated fp32 multiplies out of them).
#ifdef AIELOWER_HOST_NO_FP32_PRODUCTS
inline constexpr bool host_fp32_products = false;
#else
inline constexpr bool host_fp32_products = true;
#endif
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> mul(const vector<T, N>& a, const vector<T, N>& b) {
    static_assert(host_fp32_products || !std::is_same_v<T, float>, "fp32 x fp32 vector product (emulated on AIE)");
    accum<accfloat, N> r;
    for (unsigned i = 0; i < N; ++i) r.lane(i) = float(a[i]) * float(b[i]);
    return r;
}
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> mul(const vector<T, N>& a, T b) {
    return mul(a, broadcast<T, N>(b));
}
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> mac(const accum<accfloat, N>& acc, const vector<T, N>& a, const vector<T, N>& b) {
    static_assert(host_fp32_products || !std::is_same_v<T, float>, "fp32 x fp32 vector product (emulated on AIE)");
    accum<accfloat, N> r;
    for (unsigned i = 0; i < N; ++i) r.lane(i) = acc.lane(i) + float(a[i]) * float(b[i]);
    return r;
}
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> mac(const accum<accfloat, N>& acc, const vector<T, N>& a, T b) {
    return mac(acc, a, broadcast<T, N>(b));
}

template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> msc(const accum<accfloat, N>& acc, const vector<T, N>& a, const vector<T, N>& b) {
    static_assert(host_fp32_products || !std::is_same_v<T, float>, "fp32 x fp32 vector product (emulated on AIE)");
    accum<accfloat, N> r;
    for (unsigned i = 0; i < N; ++i) r.lane(i) = acc.lane(i) - float(a[i]) * float(b[i]);
    return r;
}
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> msc(const accum<accfloat, N>& acc, const vector<T, N>& a, T b) {
    return msc(acc, a, broadcast<T, N>(b));
}

// Accumulator plus / minus a vector, lane by lane in fp32 (one rounding).
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> add(const accum<accfloat, N>& acc, const vector<T, N>& v) {
    accum<accfloat, N> r;
    for (unsigned i = 0; i < N; ++i) r.lane(i) = acc.lane(i) + float(v[i]);
    return r;
}
template <typename T, unsigned N>
    requires(std::is_same_v<T, float> || std::is_same_v<T, bfloat16>)
accum<accfloat, N> sub(const accum<accfloat, N>& acc, const vector<T, N>& v) {
    accum<accfloat, N> r;
    for (unsigned i = 0; i < N; ++i) r.lane(i) = acc.lane(i) - float(v[i]);
    return r;
}

template <typename T, unsigned N>
T reduce_add(const vector<T, N>& v) {
    // Tree order, like the hardware's pairwise lane reduction.
    std::array<T, N> t;
    for (unsigned i = 0; i < N; ++i) t[i] = v[i];
    unsigned n = N;
    while (n > 1) {
        unsigned h = n / 2;
        for (unsigned i = 0; i < h; ++i) t[i] = T(t[i] + t[i + h]);
        if (n % 2) t[h] = t[n - 1];
        n = h + n % 2;
    }
    return t[0];
}

template <typename T, unsigned N>
T reduce_max(const vector<T, N>& v) {
    T m = v[0];
    for (unsigned i = 1; i < N; ++i)
        if (float(m) < float(v[i])) m = v[i];
    return m;
}

// ------------------------------------------------------------------------------------------------------ bits

template <typename T, unsigned N>
    requires std::is_integral_v<T>
vector<T, N> bit_and(T a, const vector<T, N>& v) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = T(a & v[i]);
    return r;
}

template <typename T, unsigned N>
    requires std::is_integral_v<T>
vector<T, N> downshift(const vector<T, N>& v, unsigned shift) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = T(v[i] >> shift);
    return r;
}

template <typename T, unsigned N>
    requires std::is_integral_v<T>
vector<T, N> upshift(const vector<T, N>& v, unsigned shift) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = T(std::make_unsigned_t<T>(v[i]) << shift);
    return r;
}

// ------------------------------------------------------------------------------------------------ conversion

template <typename TR = float, typename T, unsigned N>
    requires(std::is_same_v<TR, float> && std::is_integral_v<T>)
vector<float, N> to_float(const vector<T, N>& v, int shift = 0) {
    vector<float, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = std::ldexp(float(v[i]), -shift);
    return r;
}

template <typename TR = int32_t, unsigned N>
    requires std::is_integral_v<TR>
vector<TR, N> to_fixed(const vector<float, N>& v, int shift = 0) {
    vector<TR, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = TR(std::nearbyint(std::ldexp(v[i], shift)));
    return r;
}

// ------------------------------------------------------------------------------------------------ elementary

template <unsigned N>
vector<float, N> inv(const vector<float, N>& v) {
    vector<float, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = 1.0f / v[i];
    return r;
}

inline float inv(float a) { return 1.0f / a; }

// 2^v per lane, as bf16 (the real API: TR must be bfloat16 on XDNA2). Exact 2^v in double, rounded to fp32 and then
// to bf16 (nearest even); -inf gives 0. The hardware instruction's accuracy is not documented.
template <typename TR = bfloat16, unsigned N>
vector<TR, N> exp2(const vector<float, N>& v) {
    static_assert(std::is_same_v<TR, bfloat16>, "aie::exp2 returns bfloat16 on AIE2P (XDNA2)");
    vector<TR, N> r;
    for (unsigned i = 0; i < N; ++i) r[i] = TR(float(std::exp2(double(v[i]))));
    return r;
}
inline float invsqrt(float a) { return 1.0f / std::sqrt(a); }

// ------------------------------------------------------------------------------------------------------ mmul

// C (MxN) += A (MxK) * B (KxN); every block is row-major (A[m*K + k], B[k*N + n], C[m*N + n]).
template <unsigned M, unsigned K, unsigned N, typename TA, typename TB, typename AccTag = accfloat>
class mmul {
    static_assert(std::is_same_v<AccTag, accfloat>, "host mmul implements floating-point accumulation only");

public:
    static constexpr unsigned size_A = M * K;
    static constexpr unsigned size_B = K * N;
    static constexpr unsigned size_C = M * N;
    using accum_type = accum<AccTag, size_C>;

    mmul() = default;
    mmul(const accum_type& acc) : c_(acc) {}
    template <typename T>
    mmul(const vector<T, size_C>& v, int /*shift*/ = 0) : c_(v) {}

    void mul(const vector<TA, size_A>& a, const vector<TB, size_B>& b) {
        c_ = accum_type();
        mac(a, b);
    }

    void mac(const vector<TA, size_A>& a, const vector<TB, size_B>& b) {
        for (unsigned m = 0; m < M; ++m)
            for (unsigned n = 0; n < N; ++n) {
                float s = c_.lane(m * N + n);
                for (unsigned k = 0; k < K; ++k) s += float(a[m * K + k]) * float(b[k * N + n]);
                c_.lane(m * N + n) = s;
            }
    }

    accum_type to_accum() const { return c_; }
    operator accum_type() const { return c_; }

    template <typename T>
    vector<T, size_C> to_vector(int shift = 0) const {
        return c_.template to_vector<T>(shift);
    }

private:
    accum_type c_;
};

}  // namespace aie
