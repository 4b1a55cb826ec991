// Formatting for the command's reports: counts, bytes, durations, shares, and a simple table.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace dynamicrad::cli {

std::string count(std::int64_t n);          // 75,600
std::string bytes(std::int64_t n);          // 7.9 MB (powers of 1000)
std::string seconds(double s);              // 12.3 ms / 1.25 s
std::string fixed(double x, int decimals);  // 0.8512
std::string share(double x);                // 85.12%
std::string general(double x, int digits);  // 0.0454, 2.13e-07

// Seconds elapsed since `start` on the steady clock.
double seconds_since(std::chrono::steady_clock::time_point start);

// A label / value listing: "  label ......  value".
void print_field(std::ostream& out, const std::string& label, const std::string& value);

// A table with a header row: the first column left-aligned, the others right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out, const std::string& indent = "  ") const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace dynamicrad::cli
