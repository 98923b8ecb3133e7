// The bytes of one connection on their way to its socket, for both writers (Sink,
// WsSink).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fanwire {

// What a connection writes, in order: first what its socket did not take earlier (a copy,
// kept until the socket drains), then views gathered for this write. A view points into a
// buffer that lives until send() returns: mostly a message's encoding, which exists once
// in its topic's ring for every subscriber. So a wake-up costs one sendmsg of iovecs per
// socket and no copy per client, as the reference server writes its batch; only the part
// a full socket refuses is copied, since the ring moves on.
// Not thread-safe: used under its channel's lock.
class Outbox {
 public:
  enum class Sent : uint8_t { all, blocked, gone };

  // Bytes wait for the socket to drain.
  bool blocked() const { return offset_ < queued_.size(); }
  // Queues a copy of `bytes` (nothing may be gathered yet: views go after the queue).
  void append(std::string_view bytes);
  // One more view for the next send(), after the queue and the views before it.
  void gather(std::string_view bytes);
  // Writes the queue, then the gathered views, as far as the socket takes them; copies
  // what it refused into the queue. `gone`: the peer is gone (everything is dropped).
  Sent send(int fd);
  // Drops everything (the client left, or the connection was reset).
  void clear();

 private:
  void consume(size_t sent, size_t& view, size_t& skip);
  void keep_rest(size_t view, size_t skip);

  std::string queued_;
  size_t offset_ = 0;  // of queued_, already sent
  std::vector<std::string_view> views_;
  std::vector<iovec> iov_;  // scratch
};

}  // namespace fanwire
