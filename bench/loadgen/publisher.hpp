// Paced publisher: POSTs stamped messages over one keep-alive HTTP/1.1 connection,
// pipelining up to `window` requests, writing every message that is due in one write.
// Runs on its own thread so that pacing never waits on the subscribers' event loop.
#pragma once
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "util.hpp"

struct PublishPlan {
    double rate = 100;         // messages per second
    int64_t count = 0;         // how many to send
    int64_t first_seq = 0;     // seq of the first message (-1 for sync markers: all -1)
    size_t payload_bytes = 100;
    bool sync_markers = false; // every message carries seq -1
};

struct PublishResult {
    int64_t sent = 0;
    int64_t ok = 0;      // 2xx answers
    int64_t failed = 0;  // other answers, or none before the deadline
    double first_send = 0, last_send = 0;  // monotonic seconds
    double cpu_s = 0;
    bool connection_lost = false;
};

class Publisher {
public:
    Publisher(uint16_t port, std::string topic, int window)
        : port_(port), topic_(std::move(topic)), window_(window) {}
    ~Publisher() { close_socket(); }
    void set_keys(int keys) { keys_ = keys; }

    // Runs the plan to completion (or until `stop` turns true). Blocking.
    PublishResult run(const PublishPlan& plan, const std::atomic<bool>& stop) {
        PublishResult r;
        const double cpu0 = cpu_seconds(RUSAGE_THREAD);
        // A server closes a keep-alive connection left idle (uvicorn after 5 s, e.g. while
        // a scenario does something else between two runs): open a new one, as any HTTP
        // client does, instead of losing the run's first requests.
        if (fd_ >= 0 && closed_by_peer()) close_socket();
        if (fd_ < 0 && !connect_socket()) {
            r.connection_lost = true;
            return r;
        }
        const double start = mono_now();
        while (r.sent < plan.count && !stop.load() && !r.connection_lost) {
            const double now = mono_now();
            const auto due = std::min<int64_t>(
                plan.count, static_cast<int64_t>((now - start) * plan.rate) + 1);
            const int64_t room = window_ - (r.sent - answered());
            const int64_t batch = std::min(due - r.sent, room);
            if (batch > 0) send_batch(plan, r, batch, now);
            const double next_due = start + static_cast<double>(r.sent) / plan.rate;
            const double wait = room <= 0 ? 0.05 : std::max(next_due - mono_now(), 0.0);
            read_answers(r, std::max(wait, 0.0005));  // at least 0.5 ms: batch at high rates
        }
        // Collect every answer, so none can leak into the next run; a stopped run waits less.
        const double deadline = mono_now() + (stop.load() ? 2.0 : 10.0);
        while (answered() < r.sent && !r.connection_lost && mono_now() < deadline) {
            read_answers(r, 0.05);
        }
        r.failed = bad_ + (r.sent - answered());  // error answers and missing ones
        r.ok = ok_;
        if (answered() < r.sent || r.connection_lost) close_socket();  // start clean next run
        reset_counts();
        r.cpu_s = cpu_seconds(RUSAGE_THREAD) - cpu0;
        return r;
    }

private:
    bool connect_socket() {
        fd_ = tcp_socket(false);
        const sockaddr_in addr = loopback(port_);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
            close_socket();
            return false;
        }
        return true;
    }
    // Between runs nothing is in flight: readable now means the peer's end of file.
    bool closed_by_peer() const {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) return false;
        char byte;
        return ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
    }
    void close_socket() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int64_t answered() const { return ok_ + bad_; }
    void reset_counts() {
        ok_ = bad_ = 0;
        in_.clear();
    }

    void send_batch(const PublishPlan& plan, PublishResult& r, int64_t batch, double now) {
        out_.clear();
        const double stamp = wall_now();
        for (int64_t i = 0; i < batch; ++i) {
            const int64_t seq = plan.sync_markers ? -1 : plan.first_seq + r.sent + i;
            append_request(seq, stamp, plan.payload_bytes);
        }
        if (!write_all(fd_, out_)) r.connection_lost = true;
        if (r.sent == 0) r.first_send = now;
        r.sent += batch;
        r.last_send = now;
    }

    void append_request(int64_t seq, double stamp, size_t payload_bytes) {
        char head[128];
        const int n = keyed_head(head, sizeof head, seq, stamp, keys_);
        const size_t fixed = static_cast<size_t>(n) + 2;  // + closing "}
        const size_t pad = payload_bytes > fixed ? payload_bytes - fixed : 0;
        const size_t body_len = 9 + fixed + pad;  // {"data": ... }
        out_ += "POST /topics/" + topic_ + "/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: " +
                std::to_string(body_len) + "\r\n\r\n{\"data\":";
        out_.append(head, static_cast<size_t>(n));
        out_.append(pad, 'x');
        out_ += "\"}}";
    }

    // Waits up to `timeout_s` for answers and counts every complete one.
    void read_answers(PublishResult& r, double timeout_s) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(std::ceil(timeout_s * 1000))) <= 0) return;
        char buf[65536];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) r.connection_lost = true;
            return;
        }
        in_.append(buf, static_cast<size_t>(n));
        consume_answers();
    }

    void consume_answers() {
        size_t pos = 0;
        while (true) {
            const size_t end = in_.find("\r\n\r\n", pos);
            if (end == std::string::npos) break;
            const std::string_view head(in_.data() + pos, end - pos);
            const auto length = content_length(head);
            if (end + 4 + length > in_.size()) break;
            const int status = std::atoi(in_.c_str() + pos + 9);
            (status >= 200 && status < 300 ? ok_ : bad_) += 1;
            pos = end + 4 + length;
        }
        in_.erase(0, pos);
    }

    static size_t content_length(std::string_view head) {
        for (const std::string_view key : {"content-length:", "Content-Length:"}) {
            if (const auto v = json_number<size_t>(head, key)) return *v;
        }
        return 0;
    }

    uint16_t port_;
    std::string topic_;
    int keys_ = 0;  // > 0: every payload carries "k": seq % keys_ (a conflation key)
    int window_;
    int fd_ = -1;
    std::string out_, in_;
    int64_t ok_ = 0, bad_ = 0;
};
