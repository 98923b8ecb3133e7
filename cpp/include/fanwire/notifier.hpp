// Wakes the asyncio loop once per batch of ready subscribers.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include <boost/lockfree/queue.hpp>

namespace fanwire {

// A lock-free multi-producer queue of waiter tokens plus one eventfd. The fd is written
// only when the queue goes from empty to non-empty, so a burst of publishes to many
// subscribers costs the loop one wake-up and one drain.
class Notifier {
 public:
  // Token bit telling the waiter that the core closed it (slow consumer, shutdown).
  static constexpr uint64_t kClosingBit = uint64_t{1} << 62;
  static constexpr uint64_t kWaiterMask = kClosingBit - 1;

  Notifier();
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  int fd() const { return read_fd_; }

  // Queues `token`. Returns true when the caller must arrange a drain itself: the queue
  // was idle and `write_fd` is false (a publish from the loop's own thread needs no fd).
  bool push(uint64_t token, bool write_fd);

  // Moves every queued token to `out` and re-arms the fd.
  void drain(std::vector<uint64_t>& out);

 private:
  void signal();

  boost::lockfree::queue<uint64_t> queue_{1024};
  std::atomic<bool> signaled_{false};
  int read_fd_ = -1;
  int write_fd_ = -1;
};

}  // namespace fanwire
