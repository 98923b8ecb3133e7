#include "fanwire/writer.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>

namespace fanwire {
namespace {
constexpr uint64_t kReadyToken = 0;  // epoll data of the wake-up fd; sink ids start at 1
constexpr auto kSweepEvery = std::chrono::milliseconds(200);
}  // namespace

Writer::Writer(std::shared_ptr<Notifier> loop) : loop_(std::move(loop)) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kReadyToken;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ready_->fd(), &ev);
  thread_ = std::thread([this] { run(); });
}

Writer::~Writer() {
  stop_.store(true);
  ready_->push(kReadyToken, true);
  thread_.join();
  ::close(epoll_fd_);
}

std::shared_ptr<Sink> Writer::attach(std::vector<std::shared_ptr<Subscriber>> subs,
                                     Sink::Options options) {
  options.loop = loop_;
  options.ready = ready_;
  std::shared_ptr<Sink> sink;
  {
    std::lock_guard lock(mu_);
    const uint64_t id = next_id_++;
    sink = std::make_shared<Sink>(id, subs, std::move(options));
    sinks_.emplace(id, sink);
  }
  // Registered first, redirected next, woken last: no wake-up can be lost in between.
  for (auto& sub : subs) sub->redirect(ready_, sink->id());
  ready_->push(sink->id(), true);
  return sink;
}

size_t Writer::sink_count() const {
  std::lock_guard lock(mu_);
  return sinks_.size();
}

void Writer::run() {
  std::vector<epoll_event> events(256);
  std::vector<uint64_t> tokens;
  auto last_sweep = Clock::now();
  while (!stop_.load()) {
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 100);
    const auto now = Clock::now();
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 != kReadyToken) {
        pump(events[i].data.u64, now);
        continue;
      }
      tokens.clear();
      ready_->drain(tokens);
      for (uint64_t token : tokens)
        if ((token & Notifier::kWaiterMask) != kReadyToken) pump(token & Notifier::kWaiterMask, now);
    }
    if (now - last_sweep >= kSweepEvery) {
      sweep(now);
      last_sweep = now;
    }
  }
  std::lock_guard lock(mu_);
  sinks_.clear();
}

void Writer::pump(uint64_t id, Clock::time_point now) {
  std::shared_ptr<Sink> sink;
  {
    std::lock_guard lock(mu_);
    auto it = sinks_.find(id);
    if (it == sinks_.end()) return;
    sink = it->second;
  }
  const Sink::Pumped pumped = sink->pump(now);
  watch(*sink, pumped == Sink::Pumped::blocked);
  if (pumped == Sink::Pumped::again) ready_->push(id, true);
  retire_if_over(*sink, pumped == Sink::Pumped::blocked);
}

// EPOLLOUT is polled only while a sink's socket is full.
void Writer::watch(Sink& sink, bool blocked) {
  auto it = polled_.find(sink.id());
  const bool polled = it != polled_.end();
  if (blocked == polled) return;
  if (blocked) {
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = sink.id();
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, sink.fd(), &ev) == 0) polled_.emplace(sink.id(), true);
  } else {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, sink.fd(), nullptr);
    polled_.erase(it);
  }
}

// Heartbeats for idle streams, and forgetting the streams that ended and are flushed.
void Writer::sweep(Clock::time_point now) {
  std::vector<std::shared_ptr<Sink>> all;
  {
    std::lock_guard lock(mu_);
    all.reserve(sinks_.size());
    for (auto& entry : sinks_) all.push_back(entry.second);
  }
  for (auto& sink : all) {
    const bool blocked = sink->tick(now);
    watch(*sink, blocked);
    retire_if_over(*sink, blocked);
  }
}

// A sink is forgotten once Python closed it, or once it ended and its last bytes left.
void Writer::retire_if_over(Sink& sink, bool blocked) {
  const SinkEnd end = sink.end();
  if (end != SinkEnd::closed && (end == SinkEnd::none || blocked)) return;
  watch(sink, false);
  if (end == SinkEnd::closed) sink.release_fd();
  std::lock_guard lock(mu_);
  sinks_.erase(sink.id());
}

}  // namespace fanwire
