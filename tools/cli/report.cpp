#include "report.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace dynamicrad::cli {

std::string count(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string bytes(std::int64_t n) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(n);
  int unit = 0;
  while (value >= 1000.0 && unit < 4) {
    value /= 1000.0;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return buffer;
}

std::string seconds(double s) {
  char buffer[32];
  if (s < 1e-3) {
    std::snprintf(buffer, sizeof buffer, "%.1f us", s * 1e6);
  } else if (s < 1.0) {
    std::snprintf(buffer, sizeof buffer, "%.1f ms", s * 1e3);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.2f s", s);
  }
  return buffer;
}

std::string fixed(double x, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, x);
  return buffer;
}

std::string general(double x, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*g", digits, x);
  return buffer;
}

std::string share(double x) { return fixed(100.0 * x, 2) + "%"; }

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void print_field(std::ostream& out, const std::string& label, const std::string& value) {
  constexpr std::size_t kWidth = 22;
  out << "  " << label << std::string(label.size() < kWidth ? kWidth - label.size() : 1, ' ')
      << value << "\n";
}

void Table::print(std::ostream& out, const std::string& indent) const {
  std::vector<std::size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto line = [&](const std::vector<std::string>& row) {
    out << indent;
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
      const std::string pad(width[i] - row[i].size(), ' ');
      if (i == 0) {
        out << row[i] << pad;  // labels read left to right
      } else {
        out << "  " << pad << row[i];
      }
    }
    out << "\n";
  };
  line(header_);
  std::size_t total = 0;
  for (std::size_t w : width) total += w + 2;
  out << indent << std::string(total > 2 ? total - 2 : 0, '-') << "\n";
  for (const auto& row : rows_) line(row);
}

}  // namespace dynamicrad::cli
