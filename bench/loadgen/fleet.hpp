// The subscribers: N non-blocking connections on one epoll loop, each parsing its
// SSE or WebSocket stream and checking every stamped message it receives.
#pragma once
#include <poll.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "parsers.hpp"
#include "util.hpp"

enum class Transport { Sse, Ws };

struct FleetOptions {
    uint16_t port = 0;
    Transport transport = Transport::Sse;
    std::string topic = "bench";
    std::string sse_path;  // default /stream?topic=<topic>
    std::string ws_path = "/ws";
    bool deflate = false;  // WebSocket: offer permessage-deflate, as every browser does
    std::string subscribe_extra;  // WebSocket: more fields of `subscribe`, e.g. ,"presence":true
    int max_pending_connects = 64;
};

// What one subscriber saw during the current step.
struct ClientStats {
    int64_t received = 0;      // in-order messages of this step
    int64_t seen = 0;          // messages of this step, in order or not
    int64_t out_of_order = 0;  // duplicates or older than one already seen
    int64_t max_seq = -1;
    bool synced = false;       // saw a sync marker (seq -1)
};

struct Conn {
    enum class Phase { Idle, Connecting, Head, Streaming, Closed };
    size_t index = 0;  // position in Fleet::conns_, the epoll key is index + 1
    int fd = -1;
    Phase phase = Phase::Idle;
    bool stalled = false;  // connects and never reads
    HttpHead head;
    ChunkedDecoder chunked;
    SseParser sse;
    WsParser ws;
    std::optional<Stamp> sse_stamp;  // of the SSE event being read
    ClientStats stats;
};

struct StepWindow {  // the seqs the current step publishes: [first, first + count)
    int64_t first = 0;
    int64_t count = 0;
};

class Fleet {
public:
    explicit Fleet(FleetOptions opt) : opt_(std::move(opt)) {
        epfd_ = epoll_create1(0);
        if (opt_.sse_path.empty()) opt_.sse_path = "/stream?topic=" + opt_.topic;
    }

    // Queues `n` fast subscribers; pump_connects() opens them.
    void add_clients(int n) {
        for (int i = 0; i < n; ++i) {
            conns_.push_back(std::make_unique<Conn>());
            conns_.back()->index = conns_.size() - 1;
        }
    }

    // Opens `n` subscribers with a tiny receive buffer that never read.
    int add_stalled(int n) {
        int opened = 0;
        for (int i = 0; i < n; ++i) {
            auto c = std::make_unique<Conn>();
            c->stalled = true;
            c->fd = tcp_socket(false, 4096);
            const sockaddr_in addr = loopback(opt_.port);
            if (::connect(c->fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
                write_all(c->fd, request() + subscribe_frame())) {
                ++opened;
            }
            stalled_.push_back(std::move(c));
        }
        return opened;
    }

    struct Drained {
        int closed_by_server = 0;
        int64_t bytes = 0;
    };

    // Reads the stalled sockets for up to `seconds` and tells which ones the server closed
    // (a server's FIN waits behind its unsent data, so only reading can reveal it); then
    // closes the rest, so that the next step runs without them.
    Drained drain_stalled(double seconds) {
        Drained d;
        const double deadline = mono_now() + seconds;
        for (auto& c : stalled_) {
            char buf[65536];
            while (c->fd >= 0 && mono_now() < deadline) {
                pollfd p{c->fd, POLLIN, 0};
                if (poll(&p, 1, 100) <= 0) continue;
                const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
                if (n <= 0) {
                    ++d.closed_by_server;
                    ::close(c->fd);
                    c->fd = -1;
                } else {
                    d.bytes += n;
                }
            }
            if (c->fd >= 0) ::close(c->fd);
        }
        stalled_.clear();
        return d;
    }

    // Starts pending connects, keeping at most max_pending_connects in flight.
    void pump_connects() {
        while (next_connect_ < conns_.size() && pending_ < opt_.max_pending_connects) {
            start_connect(*conns_[next_connect_]);
            ++next_connect_;
        }
    }

    bool connecting_done() const { return next_connect_ == conns_.size() && pending_ == 0; }
    int streaming() const { return count_phase(Conn::Phase::Streaming); }
    int closed() const { return count_phase(Conn::Phase::Closed); }
    int deflated() const {  // connections whose server accepted permessage-deflate
        int n = 0;
        for (const auto& c : conns_) n += c->phase == Conn::Phase::Streaming && c->head.deflate;
        return n;
    }
    int synced() const {
        int n = 0;
        for (const auto& c : conns_) n += c->stats.synced ? 1 : 0;
        return n;
    }
    int epoll_fd() const { return epfd_; }
    const std::vector<std::unique_ptr<Conn>>& conns() const { return conns_; }
    Histogram& latency() { return latency_; }
    int64_t complete_clients() const { return complete_; }

    void begin_step(StepWindow w) {
        window_ = w;
        complete_ = 0;
        latency_.reset();
        for (auto& c : conns_) c->stats = ClientStats{.synced = c->stats.synced};
    }

    // Handles one epoll event for a subscriber socket (data.u64 = index + 1).
    void on_event(uint64_t key, uint32_t events) {
        Conn& c = *conns_[key - 1];
        if (c.phase == Conn::Phase::Connecting) {
            finish_connect(c, events);
            return;
        }
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_some(c);
    }

private:
    int count_phase(Conn::Phase p) const {
        int n = 0;
        for (const auto& c : conns_) n += c->phase == p ? 1 : 0;
        return n;
    }

    std::string request() const {
        const std::string host = "Host: 127.0.0.1:" + std::to_string(opt_.port) + "\r\n";
        if (opt_.transport == Transport::Sse) {
            return "GET " + opt_.sse_path + " HTTP/1.1\r\n" + host +
                   "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
        }
        const std::string deflate =
            opt_.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                         : "";
        return "GET " + opt_.ws_path + " HTTP/1.1\r\n" + host +
               "Upgrade: websocket\r\nConnection: Upgrade\r\n" + deflate +
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    }

    std::string subscribe_frame() const {
        if (opt_.transport == Transport::Sse) return {};
        return ws_client_frame(WsParser::Text,
                               "{\"type\":\"subscribe\",\"topic\":\"" + opt_.topic + "\"" +
                                   opt_.subscribe_extra + "}");
    }

    void start_connect(Conn& c) {
        c.fd = tcp_socket(true);
        const sockaddr_in addr = loopback(opt_.port);
        const int rc = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
        if (rc != 0 && errno != EINPROGRESS) {
            close_conn(c);
            return;
        }
        c.phase = Conn::Phase::Connecting;
        ++pending_;
        epoll_event ev{};
        ev.events = EPOLLOUT | EPOLLIN;
        ev.data.u64 = c.index + 1;
        epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
    }

    void finish_connect(Conn& c, uint32_t events) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & EPOLLERR) || !write_all(c.fd, request())) {
            --pending_;
            close_conn(c);
            return;
        }
        c.phase = Conn::Phase::Head;
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = c.index + 1;
        epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
    }

    void read_some(Conn& c) {
        char buf[65536];
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            if (c.phase == Conn::Phase::Head) --pending_;
            close_conn(c);
            return;
        }
        if (n < 0) return;
        now_ = wall_now();  // one clock read per read(): all frames in it arrived together
        std::string_view data(buf, static_cast<size_t>(n));
        if (c.phase == Conn::Phase::Head) {
            const size_t used = c.head.feed(data);
            if (used == std::string_view::npos) return;
            data.remove_prefix(used);
            --pending_;
            if (!head_accepted(c)) return;
        }
        feed_body(c, data);
    }

    bool head_accepted(Conn& c) {
        const int want = opt_.transport == Transport::Sse ? 200 : 101;
        if (c.head.status != want || !write_all(c.fd, subscribe_frame())) {
            close_conn(c);
            return false;
        }
        c.phase = Conn::Phase::Streaming;
        return true;
    }

    void feed_body(Conn& c, std::string_view data) {
        auto on_sse = [&](const char* p, size_t n) {
            c.sse.feed(p, n, [&](std::string_view data_line) { on_sse_line(c, data_line); });
        };
        if (opt_.transport == Transport::Ws) {
            c.ws.feed(data.data(), data.size(),
                      [&](uint8_t op, std::string_view payload) { on_ws_frame(c, op, payload); });
        } else if (c.head.chunked) {
            c.chunked.feed(data.data(), data.size(), on_sse);
        } else {
            on_sse(data.data(), data.size());
        }
    }

    void on_sse_line(Conn& c, std::string_view data_line) {
        if (!data_line.empty()) {
            if (!c.sse_stamp) c.sse_stamp = find_stamp(data_line);
        } else if (c.sse_stamp) {  // end of an event that carried a stamp
            on_stamp(c, *c.sse_stamp);
            c.sse_stamp.reset();
        }
    }

    void on_ws_frame(Conn& c, uint8_t op, std::string_view payload) {
        if (op == WsParser::Text || op == WsParser::Binary) {
            if (const auto stamp = find_stamp(payload)) on_stamp(c, *stamp);
        } else if (op == WsParser::Ping) {
            write_all(c.fd, ws_client_frame(WsParser::Pong, payload.substr(0, 125)));
        } else if (op == WsParser::Close) {
            close_conn(c);
        }
    }

    // Every benchmark message carries a stamp; retry:, heartbeats, acks and info don't.
    void on_stamp(Conn& c, Stamp stamp) {
        ClientStats& s = c.stats;
        if (stamp.seq < 0) {
            s.synced = true;
            return;
        }
        if (stamp.seq < window_.first || stamp.seq >= window_.first + window_.count) return;
        latency_.record(static_cast<int64_t>((now_ - stamp.sent) * 1e6));
        ++s.seen;
        if (stamp.seq > s.max_seq) {
            s.max_seq = stamp.seq;
            if (++s.received == window_.count) ++complete_;
        } else {
            ++s.out_of_order;
        }
    }

    void close_conn(Conn& c) {
        if (c.fd >= 0) {
            epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
            ::close(c.fd);
        }
        c.fd = -1;
        c.phase = Conn::Phase::Closed;
    }

    FleetOptions opt_;
    int epfd_ = -1;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::vector<std::unique_ptr<Conn>> stalled_;
    size_t next_connect_ = 0;
    int pending_ = 0;
    StepWindow window_;
    Histogram latency_;
    int64_t complete_ = 0;
    double now_ = 0;
};
