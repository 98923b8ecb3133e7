#include "fanwire/conflate.hpp"

#include <cstddef>

namespace fanwire {
namespace {

// Index just past the JSON string starting at `i` (a '"'), or npos if unterminated.
size_t skip_string(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// Index just past the JSON value starting at `i`, or npos if malformed.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size()) return std::string_view::npos;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        if (i == std::string_view::npos) return i;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return std::string_view::npos;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ') ++i;
  return i;
}

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

}  // namespace

std::optional<std::string_view> top_level_field(std::string_view json, std::string_view name) {
  size_t i = skip_space(json, 0);
  if (i >= json.size() || json[i] != '{') return std::nullopt;
  i = skip_space(json, i + 1);
  while (i < json.size() && json[i] == '"') {
    const size_t name_end = skip_string(json, i);
    if (name_end == std::string_view::npos) return std::nullopt;
    const std::string_view member = json.substr(i + 1, name_end - i - 2);
    i = skip_space(json, name_end);
    if (i >= json.size() || json[i] != ':') return std::nullopt;
    i = skip_space(json, i + 1);
    const size_t value_end = skip_value(json, i);
    if (value_end == std::string_view::npos) return std::nullopt;
    if (member == name) return json.substr(i, value_end - i);
    i = skip_space(json, value_end);
    if (i >= json.size() || json[i] != ',') return std::nullopt;
    i = skip_space(json, i + 1);
  }
  return std::nullopt;
}

}  // namespace fanwire
