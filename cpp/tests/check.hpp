// A minimal test harness: CHECK records failures, main() runs the registered tests.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace fanwire_test {

inline int failures = 0;

struct Case {
  const char* name;
  std::function<void()> body;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

struct Register {
  Register(const char* name, std::function<void()> body) { cases().push_back({name, std::move(body)}); }
};

inline int run_all() {
  for (auto& c : cases()) {
    const int before = failures;
    c.body();
    std::printf("%s %s\n", failures == before ? "ok  " : "FAIL", c.name);
  }
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace fanwire_test

#define FW_CAT2(a, b) a##b
#define FW_CAT(a, b) FW_CAT2(a, b)
#define TEST(name)                                                              \
  static void name();                                                           \
  static fanwire_test::Register FW_CAT(reg_, name)(#name, name);                \
  static void name()
#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      ++fanwire_test::failures;                                                 \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);    \
    }                                                                           \
  } while (0)
