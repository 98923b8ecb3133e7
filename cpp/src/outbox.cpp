#include "fanwire/outbox.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace fanwire {
namespace {
// The most iovecs one sendmsg takes (IOV_MAX on Linux): a longer take needs more calls.
constexpr size_t kMaxIov = 1024;
}  // namespace

void Outbox::append(std::string_view bytes) { queued_.append(bytes); }

void Outbox::gather(std::string_view bytes) {
  if (!bytes.empty()) views_.push_back(bytes);
}

void Outbox::clear() {
  queued_.clear();
  offset_ = 0;
  views_.clear();
}

Outbox::Sent Outbox::send(int fd) {
  size_t view = 0;  // first view not fully sent, and how much of it was
  size_t skip = 0;
  while (true) {
    iov_.clear();
    if (blocked()) iov_.push_back({queued_.data() + offset_, queued_.size() - offset_});
    for (size_t i = view; i < views_.size() && iov_.size() < kMaxIov; ++i) {
      const size_t from = i == view ? skip : 0;
      // sendmsg only reads through iov_base; iovec has no const variant.
      iov_.push_back({const_cast<char*>(views_[i].data()) + from, views_[i].size() - from});
    }
    if (iov_.empty()) break;
    msghdr msg{};
    msg.msg_iov = iov_.data();
    msg.msg_iovlen = iov_.size();
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      consume(static_cast<size_t>(n), view, skip);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      clear();
      return Sent::gone;
    }
  }
  keep_rest(view, skip);
  return blocked() ? Sent::blocked : Sent::all;
}

// Advances past `sent` bytes: the queue's first, then whole views and part of the next.
void Outbox::consume(size_t sent, size_t& view, size_t& skip) {
  const size_t from_queue = std::min(sent, queued_.size() - offset_);
  offset_ += from_queue;
  sent -= from_queue;
  while (sent > 0) {
    const size_t rest = views_[view].size() - skip;
    if (sent < rest) {
      skip += sent;
      return;
    }
    sent -= rest;
    ++view;
    skip = 0;
  }
}

// The socket is full (or everything went): the queue keeps only what is still to send.
void Outbox::keep_rest(size_t view, size_t skip) {
  if (!blocked()) {
    queued_.clear();
    offset_ = 0;
  }
  for (size_t i = view; i < views_.size(); ++i) queued_.append(views_[i].substr(i == view ? skip : 0));
  views_.clear();
}

}  // namespace fanwire
