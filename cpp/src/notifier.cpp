#include "fanwire/notifier.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#ifdef __linux__
#include <sys/eventfd.h>
#endif

namespace fanwire {

Notifier::Notifier() {
#ifdef __linux__
  read_fd_ = write_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (read_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
#else
  int fds[2];
  if (::pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  for (int fd : fds) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  read_fd_ = fds[0];
  write_fd_ = fds[1];
#endif
}

Notifier::~Notifier() {
  ::close(read_fd_);
  if (write_fd_ != read_fd_) ::close(write_fd_);
}

bool Notifier::push(uint64_t token, bool write_fd) {
  queue_.push(token);
  // Only the push that finds the queue idle signals; the drain re-arms the flag.
  if (signaled_.exchange(true)) return false;
  if (!write_fd) return true;
  signal();
  return false;
}

void Notifier::signal() {
  const uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  [[maybe_unused]] auto n = ::write(write_fd_, &one, sizeof one);
}

void Notifier::drain(std::vector<uint64_t>& out) {
  // Consume the fd's signal *before* re-arming the flag: the other order lets a push
  // signal between the two, have its signal eaten here, and leave the flag set with no
  // signal pending, so that no later push would ever write the fd again.
  uint64_t counter = 0;
  [[maybe_unused]] auto n = ::read(read_fd_, &counter, sizeof counter);
  signaled_.store(false);
  queue_.consume_all([&out](uint64_t token) { out.push_back(token); });
}

}  // namespace fanwire
