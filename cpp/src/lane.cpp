#include "fanwire/lane.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>

namespace fanwire {
namespace {
constexpr uint64_t kReadyToken = 0;  // epoll data of the wake-up fd; sink ids start at 1
// Epoll data of the replies fd (no sink has it: ids are far below).
constexpr uint64_t kRepliesToken = Notifier::kWaiterMask - 1;
// Subscribers' wake-ups served between two looks at the sockets and at the replies: with
// a thousand streams a whole round takes milliseconds, which an ack (and the publish it
// answers, read from a socket) must not wait for.
constexpr size_t kSlice = 64;
// A wake-up token (no sink has it): the grace cap changed, every timer is recomputed.
constexpr uint64_t kCapToken = Notifier::kWaiterMask;
constexpr uint32_t kReadEvents = EPOLLIN | EPOLLRDHUP;
constexpr int kMaxWaitMs = 1000;
// Timers due this close together fire in one wake-up: with thousands of streams their
// heartbeats are spread over time, and one epoll_wait per heartbeat doubled the writer's
// idle CPU. A heartbeat or a reset this much early changes nothing a client notices.
constexpr auto kSlack = std::chrono::milliseconds(20);
}  // namespace

Lane::Lane(std::shared_ptr<Notifier> loop, std::shared_ptr<Notifier> inbox)
    : loop_(std::move(loop)), inbox_(std::move(inbox)) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kReadyToken;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ready_->fd(), &ev);
  ev.data.u64 = kRepliesToken;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, replies_->fd(), &ev);
  thread_ = std::thread([this] { run(); });
}

Lane::~Lane() {
  stop_.store(true);
  ready_->push(kReadyToken, true);
  thread_.join();
  ::close(epoll_fd_);
}

std::shared_ptr<Sink> Lane::attach(std::vector<std::shared_ptr<Subscriber>> subs,
                                     Sink::Options options) {
  options.loop = loop_;
  options.ready = replies_;  // Python's close() and inject(); subscribers wake ready_
  std::shared_ptr<Sink> sink;
  {
    std::lock_guard lock(mu_);
    sink = std::make_shared<Sink>(next_id_++, subs, std::move(options));
  }
  add(sink);
  // Registered first, redirected next, woken last: no wake-up can be lost in between.
  for (auto& sub : subs) sub->redirect(ready_, sink->id());
  ready_->push(sink->id(), true);
  return sink;
}

std::shared_ptr<WsSink> Lane::attach_ws(WsSink::Options options) {
  options.loop = loop_;
  options.inbox = inbox_;
  options.ready = ready_;
  options.replies = replies_;
  std::shared_ptr<WsSink> sink;
  {
    std::lock_guard lock(mu_);
    sink = std::make_shared<WsSink>(next_id_++, std::move(options));
  }
  add(sink);
  ready_->push(sink->id(), true);  // bytes the client sent with its handshake, if any
  return sink;
}

// Read from the start: a client that leaves is seen with no traffic on its topics.
void Lane::add(std::shared_ptr<Channel> channel) {
  const int fd = channel->fd();
  const uint64_t id = channel->id();
  {
    std::lock_guard lock(mu_);
    sinks_.emplace(id, std::move(channel));
  }
  epoll_event ev{};
  ev.events = kReadEvents;
  ev.data.u64 = id;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
}

size_t Lane::sink_count() const {
  std::lock_guard lock(mu_);
  return sinks_.size();
}

void Lane::limit_grace(double seconds) {
  const auto at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(std::max(0.0, seconds)));
  Clock::rep want = at.time_since_epoch().count();
  Clock::rep have = cap_.load();
  while (want < have && !cap_.compare_exchange_weak(have, want)) {
  }
  ready_->push(kCapToken, true);
}

Clock::time_point Lane::cap() const { return Clock::time_point(Clock::duration(cap_.load())); }

std::shared_ptr<Channel> Lane::find(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = sinks_.find(id);
  return it == sinks_.end() ? nullptr : it->second;
}

// Each turn looks at the sockets and the replies (without waiting while wake-ups are
// queued), then serves at most kSlice queued wake-ups: what Python queued (acks, replies,
// closes) and what the clients sent are served within a slice, not after a whole round.
void Lane::run() {
  std::vector<epoll_event> events(256);
  std::vector<uint64_t> queued;  // subscribers' wake-ups drained, served from `next` on
  std::vector<uint64_t> replies;
  size_t next = 0;
  while (!stop_.load()) {
    const int timeout = next < queued.size() ? 0 : wait_ms(Clock::now());
    const int n =
        ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    const auto now = Clock::now();
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kReadyToken) {
        ready_->drain(queued);
      } else if (id == kRepliesToken) {
        replies.clear();
        replies_->drain(replies);
        for (uint64_t token : replies) serve(token, now);
      } else {
        if (events[i].events & (kReadEvents | EPOLLHUP | EPOLLERR))
          if (auto sink = find(id)) sink->on_readable(now);
        pump(id, now);
      }
    }
    const size_t until = std::min(queued.size(), next + kSlice);
    for (; next < until; ++next) serve(queued[next], now);
    if (next == queued.size()) {
      queued.clear();
      next = 0;
    }
    fire_timers(now);
  }
  std::lock_guard lock(mu_);
  sinks_.clear();
}

void Lane::serve(uint64_t token, Clock::time_point now) {
  const uint64_t target = token & Notifier::kWaiterMask;
  if (target == kCapToken) {
    for (auto& entry : timer_at_) timers_.emplace(Clock::time_point::min(), entry.first);
    for (auto& entry : timer_at_) entry.second = Clock::time_point::min();
  } else if (target != kReadyToken) {
    pump(target, now);
  }
}

int Lane::wait_ms(Clock::time_point now) const {
  if (timers_.empty()) return kMaxWaitMs;
  const auto due = timers_.top().first;
  if (due <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(due - now).count();
  return static_cast<int>(std::min<decltype(ms)>(ms, kMaxWaitMs));
}

void Lane::fire_timers(Clock::time_point now) {
  const auto soon = now + kSlack;  // ticked as if it were then: nothing is due again before
  while (!timers_.empty() && timers_.top().first <= soon) {
    const auto [at, id] = timers_.top();
    timers_.pop();
    auto live = timer_at_.find(id);
    if (live == timer_at_.end() || live->second != at) continue;  // stale
    timer_at_.erase(live);
    auto sink = find(id);
    if (!sink) continue;
    watch(*sink, sink->tick(soon));
    settle(*sink, soon);
  }
}

void Lane::pump(uint64_t id, Clock::time_point now) {
  auto sink = find(id);
  if (!sink) return;
  const Channel::Pumped pumped = sink->pump(now);
  watch(*sink, pumped == Channel::Pumped::blocked);
  if (pumped == Channel::Pumped::again) ready_->push(id, true);
  settle(*sink, now);
}

// A sink stays polled for reading (unless its input is paused, see Channel::reading);
// EPOLLOUT is added only while its socket is full.
void Lane::watch(Channel& sink, bool blocked) {
  const uint32_t want = (sink.reading() ? kReadEvents : uint32_t{EPOLLRDHUP}) |
                        (blocked ? uint32_t{EPOLLOUT} : 0u);
  auto it = polled_.find(sink.id());
  const uint32_t have = it == polled_.end() ? kReadEvents : it->second;
  if (want == have || sink.fd() < 0) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = sink.id();
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, sink.fd(), &ev);
  if (want == kReadEvents) polled_.erase(it);
  else polled_[sink.id()] = want;
}

// Retires a sink that is over (closed by Python, ended and flushed, or stuck past its
// grace), else keeps its timer due no later than its next deadline.
void Lane::settle(Channel& sink, Clock::time_point now) {
  const auto limit = cap();
  const Channel::Over over = sink.over(now, limit);
  if (over == Channel::Over::no) {
    if (!sink.done()) schedule(sink.id(), sink.next_deadline(now, limit));
    return;
  }
  if (sink.fd() >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, sink.fd(), nullptr);
  polled_.erase(sink.id());
  timer_at_.erase(sink.id());
  sink.retire(over == Channel::Over::reset);
  std::lock_guard lock(mu_);
  sinks_.erase(sink.id());
}

// One live timer per sink: an earlier deadline replaces the live one (the old heap entry
// goes stale); a later one waits until the live one fires, which reschedules it.
void Lane::schedule(uint64_t id, Clock::time_point at) {
  auto it = timer_at_.find(id);
  if (it != timer_at_.end() && it->second <= at) return;
  timer_at_[id] = at;
  timers_.emplace(at, id);
}

}  // namespace fanwire
