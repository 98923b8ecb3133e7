// Log-linear latency histogram: 32 sub-buckets per power of two (~3% precision),
// microsecond resolution, fixed memory, O(1) record.
#pragma once
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

class Histogram {
public:
    void record(int64_t micros) {
        const uint64_t v = micros < 0 ? 0 : static_cast<uint64_t>(micros);
        ++counts_[index_of(v)];
        ++total_;
        max_ = std::max(max_, v);
    }
    void reset() { *this = Histogram{}; }
    uint64_t count() const { return total_; }
    uint64_t max() const { return max_; }

    // The non-empty buckets as (midpoint µs, count): several processes' histograms can be
    // summed and read with the same percentile rule (bench/many.py merges them).
    template <typename F>
    void for_each_bucket(F&& f) const {
        for (size_t i = 0; i < counts_.size(); ++i) {
            if (counts_[i]) f(std::min(midpoint_of(i), max_), counts_[i]);
        }
    }

    // Value (µs) at percentile p in [0, 100]: the midpoint of the bucket reached.
    uint64_t percentile(double p) const {
        if (total_ == 0) return 0;
        const auto rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(total_ - 1)) + 1;
        uint64_t seen = 0;
        for (size_t i = 0; i < counts_.size(); ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::min(midpoint_of(i), max_);
        }
        return max_;
    }

private:
    static constexpr int kSubBits = 5;
    static constexpr uint64_t kSub = 1u << kSubBits;
    static constexpr size_t kBuckets = 48 * kSub;

    static size_t index_of(uint64_t v) {
        if (v < kSub) return v;
        const int exp = std::bit_width(v) - 1;  // >= kSubBits
        const uint64_t sub = (v >> (exp - kSubBits)) & (kSub - 1);
        return std::min<size_t>((exp - kSubBits + 1) * kSub + sub, kBuckets - 1);
    }
    static uint64_t midpoint_of(size_t i) {
        if (i < kSub) return i;
        const int exp = static_cast<int>(i / kSub) + kSubBits - 1;
        const uint64_t sub = i % kSub;
        const uint64_t low = (kSub + sub) << (exp - kSubBits);
        const uint64_t width = uint64_t{1} << (exp - kSubBits);
        return low + width / 2;
    }

    std::array<uint64_t, kBuckets> counts_{};
    uint64_t total_ = 0;
    uint64_t max_ = 0;
};
