// Small helpers shared by the load generator: clocks, CPU time, number extraction,
// socket setup.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

inline double wall_now() {  // epoch seconds, the clock publishers stamp messages with
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

inline double mono_now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

inline double cpu_seconds(int who) {  // RUSAGE_SELF or RUSAGE_THREAD
    rusage ru{};
    getrusage(who, &ru);
    auto secs = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec * 1e-6; };
    return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// Finds `"key":` in text and parses the number after it (spaces allowed).
template <typename T>
std::optional<T> json_number(std::string_view text, std::string_view quoted_key) {
    const size_t at = text.find(quoted_key);
    if (at == std::string_view::npos) return std::nullopt;
    size_t pos = at + quoted_key.size();
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == ':')) ++pos;
    T value{};
    const auto res = std::from_chars(text.data() + pos, text.data() + text.size(), value);
    if (res.ec != std::errc{}) return std::nullopt;
    return value;
}

struct Stamp {  // what each benchmark payload carries: its sequence and send time
    int64_t seq;
    double sent;
};

inline std::optional<Stamp> find_stamp(std::string_view text) {
    const auto seq = json_number<int64_t>(text, "\"seq\"");
    if (!seq) return std::nullopt;
    const auto sent = json_number<double>(text, "\"t\"");
    if (!sent) return std::nullopt;
    return Stamp{*seq, *sent};
}

// The start of a stamped payload, up to the padding's opening quote: {"seq":N,"t":T,"pad":"
// or, with keys > 0, {"seq":N,"k":N%keys,"t":T,"pad":" (a key for conflating topics).
inline int keyed_head(char* out, size_t size, int64_t seq, double stamp, int keys) {
    const auto s = static_cast<long long>(seq);
    if (keys > 0 && seq >= 0) {
        return std::snprintf(out, size, "{\"seq\":%lld,\"k\":%lld,\"t\":%.6f,\"pad\":\"", s,
                             s % keys, stamp);
    }
    return std::snprintf(out, size, "{\"seq\":%lld,\"t\":%.6f,\"pad\":\"", s, stamp);
}

inline int tcp_socket(bool nonblocking, int rcvbuf = 0) {
    const int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    return fd;
}

inline sockaddr_in loopback(uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // benchmark traffic never leaves 127.0.0.1
    return addr;
}

inline bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}
