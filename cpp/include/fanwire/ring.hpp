// A bounded log addressed by absolute position: the topic's retention ring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace fanwire {

// Holds the last `capacity` items pushed. Item n (counting from 0 since creation) stays
// addressable as at(n) while begin() <= n < end(). Storage grows by doubling up to the
// capacity, so an idle topic costs nothing for its retention.
template <class T>
class Ring {
 public:
  explicit Ring(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  size_t size() const { return static_cast<size_t>(end_ - begin_); }
  size_t capacity() const { return capacity_; }
  bool empty() const { return begin_ == end_; }
  bool full() const { return size() == capacity_; }

  const T& at(uint64_t pos) const { return slots_[pos % slots_.size()]; }
  T& at(uint64_t pos) { return slots_[pos % slots_.size()]; }
  const T& front() const { return at(begin_); }

  // Appends `item`, evicting the oldest one when full.
  void push(T item) {
    if (full()) {
      ++begin_;  // the slot of the oldest item is overwritten below
    } else if (size() == slots_.size()) {
      grow();
    }
    slots_[end_ % slots_.size()] = std::move(item);
    ++end_;
  }

  // Releases the oldest item (the ring must not be empty).
  void pop_front() {
    slots_[begin_ % slots_.size()] = T{};
    ++begin_;
  }

  void clear() {
    slots_.clear();
    begin_ = end_;
  }

 private:
  void grow() {
    size_t bigger = slots_.empty() ? 8 : slots_.size() * 2;
    if (bigger > capacity_) bigger = capacity_;
    std::vector<T> next(bigger);
    for (uint64_t pos = begin_; pos < end_; ++pos) next[pos % bigger] = std::move(slots_[pos % slots_.size()]);
    slots_.swap(next);
  }

  size_t capacity_;
  std::vector<T> slots_;
  uint64_t begin_ = 0;
  uint64_t end_ = 0;
};

}  // namespace fanwire
