// Publish ingest: publishes as fast as the server acknowledges them, closed loop, for a
// fixed time. `http` is one message per POST, `batch` one POST of `batch` messages
// (`{"messages": [...]}`), `ws` one WebSocket `publish` per message (acked one by one).
// Each of `conns` connections keeps `window` requests in flight (HTTP pipelining, or
// WebSocket messages not yet acked). Runs on its own thread, like the paced publisher.
#pragma once
#include <poll.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "parsers.hpp"
#include "util.hpp"

enum class FloodKind { Http, Batch, Ws };

struct FloodPlan {
    FloodKind kind = FloodKind::Http;
    double seconds = 1;
    size_t payload_bytes = 100;
    int conns = 1;
    int window = 64;  // requests in flight per connection
    int batch = 1;    // messages per request (kind Batch)
    int64_t first_seq = 0;
};

struct FloodResult {
    int64_t sent = 0;    // messages sent
    int64_t acked = 0;   // messages acknowledged (2xx, or a WebSocket ack)
    int64_t failed = 0;  // messages refused, or not answered in time
    double elapsed_s = 0;  // first send to last answer
    double cpu_s = 0;
    bool connection_lost = false;
};

class Flood {
public:
    Flood(uint16_t port, std::string topic) : port_(port), topic_(std::move(topic)) {}
    void set_keys(int keys) { keys_ = keys; }

    FloodResult run(const FloodPlan& plan, const std::atomic<bool>& stop) {
        FloodResult r;
        const double cpu0 = cpu_seconds(RUSAGE_THREAD);
        plan_ = plan;
        seq_ = plan.first_seq;
        std::vector<std::unique_ptr<Link>> links;
        for (int i = 0; i < plan.conns; ++i) {
            auto link = std::make_unique<Link>();
            if (!open(*link)) {
                r.connection_lost = true;
                break;
            }
            links.push_back(std::move(link));
        }
        const double start = mono_now();
        const double deadline = start + plan.seconds;
        double last_answer = start;
        std::vector<pollfd> fds(links.size());
        // Send while the time lasts, then collect what is in flight (at most 5 s more).
        while (!r.connection_lost && !links.empty()) {
            const double now = mono_now();
            const bool sending = now < deadline && !stop.load();
            if (!sending && (now > deadline + 5 || inflight(links) == 0)) break;
            for (auto& link : links) {
                if (sending) fill(*link, r);
            }
            for (size_t i = 0; i < links.size(); ++i) fds[i] = {links[i]->fd, POLLIN, 0};
            if (poll(fds.data(), fds.size(), 5) <= 0) continue;
            for (size_t i = 0; i < links.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                const int64_t before = r.acked + r.failed;
                if (!read_answers(*links[i], r)) r.connection_lost = true;
                if (r.acked + r.failed > before) last_answer = mono_now();
            }
        }
        for (auto& link : links) {
            r.failed += link->inflight * (plan.kind == FloodKind::Batch ? plan.batch : 1);
            ::close(link->fd);
        }
        r.elapsed_s = last_answer - start;
        r.cpu_s = cpu_seconds(RUSAGE_THREAD) - cpu0;
        return r;
    }

private:
    struct Link {
        int fd = -1;
        int64_t inflight = 0;  // requests sent and not answered
        std::string in, out;
        WsParser ws;
    };

    static int64_t inflight(const std::vector<std::unique_ptr<Link>>& links) {
        int64_t n = 0;
        for (const auto& l : links) n += l->inflight;
        return n;
    }

    bool open(Link& l) {
        l.fd = tcp_socket(false);
        const sockaddr_in addr = loopback(port_);
        if (l.fd < 0 || ::connect(l.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            return false;
        if (plan_.kind != FloodKind::Ws) return true;
        const std::string req =
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        if (!write_all(l.fd, req)) return false;
        HttpHead head;
        char buf[4096];
        while (true) {
            const ssize_t n = ::recv(l.fd, buf, sizeof buf, 0);
            if (n <= 0) return false;
            const size_t used = head.feed(std::string_view(buf, static_cast<size_t>(n)));
            if (used == std::string_view::npos) continue;
            l.in.assign(buf + used, static_cast<size_t>(n) - used);  // frames already here
            return head.status == 101;
        }
    }

    std::string payload() {
        char head[128];
        const int n = keyed_head(head, sizeof head, seq_++, wall_now(), keys_);
        const size_t fixed = static_cast<size_t>(n) + 2;
        std::string p(head, static_cast<size_t>(n));
        p.append(plan_.payload_bytes > fixed ? plan_.payload_bytes - fixed : 0, 'x');
        return p + "\"}";
    }

    void fill(Link& l, FloodResult& r) {
        l.out.clear();
        const int per = plan_.kind == FloodKind::Batch ? plan_.batch : 1;
        while (l.inflight < plan_.window) {
            if (plan_.kind == FloodKind::Ws) {
                l.out += ws_client_frame(WsParser::Text, "{\"type\":\"publish\",\"topic\":\"" +
                                                             topic_ + "\",\"data\":" + payload() + "}");
            } else {
                std::string body;
                if (plan_.kind == FloodKind::Batch) {
                    body = "{\"messages\":[";
                    for (int i = 0; i < per; ++i) body += (i ? ",{\"data\":" : "{\"data\":") + payload() + "}";
                    body += "]}";
                } else {
                    body = "{\"data\":" + payload() + "}";
                }
                l.out += "POST /topics/" + topic_ + "/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body;
            }
            ++l.inflight;
            r.sent += per;
        }
        if (!l.out.empty() && !write_all(l.fd, l.out)) r.connection_lost = true;
    }

    bool read_answers(Link& l, FloodResult& r) {
        char buf[65536];
        const ssize_t n = ::recv(l.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) return false;
        if (n < 0) return errno == EAGAIN || errno == EINTR;
        l.in.append(buf, static_cast<size_t>(n));
        if (plan_.kind == FloodKind::Ws) {
            l.ws.feed(l.in.data(), l.in.size(), [&](uint8_t op, std::string_view text) {
                if (op != WsParser::Text) return;
                const bool ack = text.find("\"type\":\"ack\"") != std::string_view::npos;
                const bool error = text.find("\"type\":\"error\"") != std::string_view::npos;
                if (!ack && !error) return;  // the greeting
                (ack ? r.acked : r.failed) += 1;
                --l.inflight;
            });
            l.in.clear();
            return true;
        }
        const int per = plan_.kind == FloodKind::Batch ? plan_.batch : 1;
        size_t pos = 0;
        while (true) {
            const size_t end = l.in.find("\r\n\r\n", pos);
            if (end == std::string::npos) break;
            const std::string_view head(l.in.data() + pos, end - pos);
            size_t length = 0;
            for (const std::string_view key : {"content-length:", "Content-Length:"}) {
                if (const auto v = json_number<size_t>(head, key)) length = *v;
            }
            if (end + 4 + length > l.in.size()) break;
            const int status = std::atoi(l.in.c_str() + pos + 9);
            (status >= 200 && status < 300 ? r.acked : r.failed) += per;
            --l.inflight;
            pos = end + 4 + length;
        }
        l.in.erase(0, pos);
        return true;
    }

    uint16_t port_;
    std::string topic_;
    int keys_ = 0;  // > 0: every payload carries "k": seq % keys_ (a conflation key)
    FloodPlan plan_;
    int64_t seq_ = 0;
};
