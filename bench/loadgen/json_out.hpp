// A tiny writer for flat JSON objects (the load generator's only output format).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

class JsonOut {
public:
    JsonOut& str(std::string_view key, std::string_view value) {
        return raw(key, quote(value));
    }
    template <typename T>
    JsonOut& num(std::string_view key, T value) {
        if constexpr (std::is_floating_point_v<T>) {
            if (!std::isfinite(value)) return raw(key, "null");
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(value));
            return raw(key, buf);
        } else {
            return raw(key, std::to_string(value));
        }
    }
    JsonOut& boolean(std::string_view key, bool value) { return raw(key, value ? "true" : "false"); }
    JsonOut& array(std::string_view key, const std::vector<int64_t>& values) {
        std::string a = "[";
        for (size_t i = 0; i < values.size(); ++i) {
            if (i) a += ',';
            a += std::to_string(values[i]);
        }
        return raw(key, a + "]");
    }
    JsonOut& raw(std::string_view key, std::string_view json) {
        body_ += body_.empty() ? "{" : ",";
        body_ += quote(key);
        body_ += ':';
        body_ += json;
        return *this;
    }
    std::string close() const { return body_.empty() ? "{}" : body_ + "}"; }

private:
    static std::string quote(std::string_view s) {
        std::string q = "\"";
        for (const char c : s) {
            if (c == '"' || c == '\\') q += '\\';
            if (static_cast<unsigned char>(c) >= 0x20) q += c;
        }
        return q + "\"";
    }
    std::string body_;
};
